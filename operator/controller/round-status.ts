// Sub-decider folding what was observed of one round (S3 markers, failed.json, its Job) into its
// phase and status entry. Pure.
import type { ContinualClipRunSpec, RoundPhase, RoundStatus } from "../api/continual-clip-run.ts";
import { ROUND_FILES, roundUri } from "../api/round-layout.ts";
import { trainJobName } from "../kube/objects.ts";
import type { ComputeRecord, JobObservation, RoundObservation, RoundRecord } from "./types.ts";

/** Phases in which the trainer has finished and written its checkpoint. */
export const TRAINED: ReadonlySet<RoundPhase> = new Set([
  "Trained",
  "Evaluating",
  "Gating",
  "Promoted",
  "Passed",
  "Rejected",
]);

export type PhaseOf = { phase: RoundPhase; reason?: string | undefined; message?: string | undefined };

/** The source of truth is the world: _SUCCESS, then failed.json, then the Job. */
export function phaseOf(r: RoundObservation): PhaseOf {
  if (r.files.has(ROUND_FILES.success)) return { phase: "Trained" };
  if (r.failure) return { phase: "Failed", reason: r.failure.reason, message: r.failure.message };
  if (r.job?.failure) return { phase: "Failed", reason: r.job.failure.reason, message: r.job.failure.message };
  if (r.job?.complete) {
    return {
      phase: "Failed",
      reason: "MissingArtifacts",
      message: `Job ${r.job.name} completed but ${ROUND_FILES.success} is missing`,
    };
  }
  if (r.job) return { phase: "Training" };
  return { phase: "Pending" };
}

/** What a finished trainer Job spent: its wall time on every GPU of every node. */
export function jobCompute(spec: ContinualClipRunSpec, job: JobObservation | undefined): ComputeRecord | undefined {
  if (!job?.startTime || !job.completionTime) return undefined;
  const secs = (Date.parse(job.completionTime) - Date.parse(job.startTime)) / 1000;
  return {
    gpuSeconds: Math.max(0, secs) * spec.trainer.nodes * spec.trainer.gpusPerNode,
    startedAt: job.startTime,
    finishedAt: job.completionTime,
  };
}

function gpuSeconds(
  spec: ContinualClipRunSpec,
  r: RoundObservation,
  prev: RoundStatus | undefined,
): number | undefined {
  return jobCompute(spec, r.job)?.gpuSeconds ?? r.compute?.gpuSeconds ?? prev?.gpuSeconds;
}

/** status.rounds[] of one observed round; prev keeps facts whose source is gone (Job TTL). */
export function roundStatus(
  spec: ContinualClipRunSpec,
  run: { name: string },
  r: RoundObservation,
  p: PhaseOf & { fields?: Pick<RoundStatus, "metrics" | "gates" | "promotedVersion"> },
  prev: RoundStatus | undefined,
): RoundRecord {
  const plan = r.plan!;
  const uri = roundUri(spec.artifacts.s3, r.index);
  const gpu = gpuSeconds(spec, r, prev);
  const skipped = TRAINED.has(p.phase) ? (r.skipped ?? prev?.skippedSamples) : undefined;
  const startedAt = r.job?.startTime ?? r.compute?.startedAt ?? prev?.startedAt;
  const finishedAt = r.job?.completionTime ?? r.compute?.finishedAt ?? prev?.finishedAt;
  return {
    index: r.index,
    slices: plan.newSlices,
    replay: plan.replay,
    phase: p.phase,
    ...(p.reason ? { reason: p.reason } : {}),
    ...(p.message ? { message: p.message } : {}),
    job: r.job?.name ?? prev?.job ?? trainJobName(run.name, r.index),
    ...(plan.model.initCheckpoint ? { initCheckpoint: plan.model.initCheckpoint } : {}),
    ...(TRAINED.has(p.phase) ? { checkpoint: `${uri}${ROUND_FILES.checkpoint}`, samples: plan.data.samples } : {}),
    ...(gpu !== undefined ? { gpuSeconds: gpu } : {}),
    ...(skipped ? { skippedSamples: skipped } : {}),
    ...(p.fields ?? {}),
    ...(startedAt ? { startedAt } : {}),
    ...(finishedAt ? { finishedAt } : {}),
  };
}
