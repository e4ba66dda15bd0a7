// The round state machine, pure: observed rounds (S3 markers, plans, Jobs) and slices in,
// actions and the rounds part of status out. No I/O, no clock.
//
// Source of truth is the world, not status: a round exists when rounds/<NNNN>/plan.json exists;
// it is Trained when the trainer wrote _SUCCESS; Failed when failed.json exists or its Job failed.
// Status can therefore be wiped and rebuilt.
//
// Failure policy: a failed round consumes nothing. Its slices are retried by the next round, which
// starts when a new valid slice arrives or the spec changes (a new generation), warm-starting from
// the same checkpoint the failed round used. Retrying on nothing new would fail the same way.
import type { ContinualClipRunSpec, RoundPhase, RoundStatus } from "../api/continual-clip-run.ts";
import { compareSliceIds } from "../api/slice-manifest.ts";
import { ROUND_PLAN_SCHEMA_VERSION, type RoundPlan } from "../api/round-plan.ts";
import { computeAccounting, type ComputeStatus } from "../data/compute.ts";
import { planRound } from "../data/planner.ts";
import type { Slice } from "../data/validate.ts";
import { ROUND_FILES, roundPrefix } from "../s3/round-store.ts";
import { buildRendezvousService, buildTrainJob, type RunRef } from "../training/job.ts";
import { trainJobName } from "../training/naming.ts";
import type { PlannedEvent } from "./decide.ts";
import type { EvalResult } from "../api/eval-result.ts";
import { judgeRound } from "../evaluation/verdict.ts";
import { buildEvalJob } from "../evaluation/job.ts";
import { roundUri } from "../evaluation/request.ts";
import { isRoundApproved } from "../promotion/approval.ts";

export type JobObservation = {
  name: string;
  active: number;
  succeeded: number;
  failed: number;
  complete: boolean;
  /** The Job's Failed condition, with the last failed pod's exit code / reason folded into message. */
  failure?: { reason: string; message: string } | undefined;
  startTime?: string | undefined;
  completionTime?: string | undefined;
};

export type FailureRecord = { reason: string; message: string; generation: number; failedAt: string };

export type RoundObservation = {
  index: number;
  files: ReadonlySet<string>;
  plan?: RoundPlan | undefined;
  failure?: FailureRecord | undefined;
  job?: JobObservation | undefined;
  /** eval.json, once the evaluator wrote it. */
  evaluation?: EvalResult | undefined;
  evalJob?: JobObservation | undefined;
  /** The immutable promoted version made from this round, if any. */
  promotedVersion?: number | undefined;
};

export type RoundAction =
  | { kind: "WritePlan"; round: number; key: string; plan: RoundPlan }
  | { kind: "CreateJob"; round: number; job: Record<string, any>; service?: Record<string, any> | undefined; event: PlannedEvent }
  | { kind: "RecordFailure"; round: number; key: string; record: FailureRecord; event: PlannedEvent }
  | { kind: "EvaluateInProcess"; round: number; roundSlices: string[] }
  | { kind: "Promote"; round: number; metrics: Record<string, number> };

export type RoundsInput = {
  run: RunRef;
  spec: ContinualClipRunSpec;
  /** Valid slices in slice order, from a complete (error-free) discovery pass; undefined if none yet. */
  slices: Slice[] | undefined;
  rounds: RoundObservation[];
  /** Previous status.rounds, to keep facts whose source is gone (GPU-seconds after Job TTL). */
  previous: RoundStatus[] | undefined;
  /** status.promoted, for warmStartFrom: LastPromoted and maxRegression gates. */
  promoted?: { version: number; uri: string; metrics?: Record<string, number> | undefined } | undefined;
  promotedCheckpoint?: string | undefined;
  /** Image for evaluation Jobs (the operator's own); unset evaluates in the operator process. */
  evaluatorImage?: string | undefined;
  /** The run's annotations (Manual promotion approvals). */
  annotations?: Record<string, string> | undefined;
  now: Date;
};

export type RoundsDecision = {
  actions: RoundAction[];
  rounds: RoundStatus[];
  current: RoundStatus | undefined;
  compute: ComputeStatus;
  /** Slices trained on by a Trained round, or in a running one. */
  consumed: string[];
  /** Slices that sort before an already covered slice: ignored, since rounds follow time order. */
  late: string[];
  /** Transition events of rounds (rejections). */
  events: PlannedEvent[];
  /** Why no new round starts although data is waiting (suspended, failed round, plan problem). */
  waiting?: { reason: string; message: string } | undefined;
  planProblem?: PlannedEvent | undefined;
};

// A round in one of these phases holds the next one back (Gating only while promotion is due, not
// while a Manual approval is awaited).
const ACTIVE: ReadonlySet<RoundPhase> = new Set(["Pending", "Training", "Trained", "Evaluating", "Gating"]);
const TRAINED: ReadonlySet<RoundPhase> = new Set(["Trained", "Evaluating", "Gating", "Promoted", "Passed", "Rejected"]);
const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");


function phaseOf(r: RoundObservation): { phase: RoundPhase; reason?: string; message?: string } {
  if (r.files.has(ROUND_FILES.success)) return { phase: "Trained" };
  if (r.failure) return { phase: "Failed", reason: r.failure.reason, message: r.failure.message };
  if (r.job?.failure) return { phase: "Failed", reason: r.job.failure.reason, message: r.job.failure.message };
  if (r.job?.complete) {
    return { phase: "Failed", reason: "MissingArtifacts", message: `Job ${r.job.name} completed but ${ROUND_FILES.success} is missing` };
  }
  if (r.job) return { phase: "Training" };
  return { phase: "Pending" };
}

function gpuSeconds(spec: ContinualClipRunSpec, job: JobObservation | undefined, prev: RoundStatus | undefined): number | undefined {
  if (job?.startTime && job.completionTime) {
    const secs = (Date.parse(job.completionTime) - Date.parse(job.startTime)) / 1000;
    return Math.max(0, secs) * spec.trainer.nodes * spec.trainer.gpusPerNode;
  }
  return prev?.gpuSeconds;
}

export function decideRounds(input: RoundsInput): RoundsDecision {
  const { spec, run } = input;
  const actions: RoundAction[] = [];
  const prevByIndex = new Map((input.previous ?? []).map((r) => [r.index, r]));
  const observed = [...input.rounds].filter((r) => r.plan).sort((a, b) => a.index - b.index);
  const statuses: RoundStatus[] = [];
  const events: PlannedEvent[] = [];

  const latestPromoted = Math.max(-1, ...observed.filter((r) => r.promotedVersion !== undefined).map((r) => r.index));
  for (const r of observed) {
    const plan = r.plan!;
    let { phase, reason, message } = phaseOf(r);
    let verdictFields: Pick<RoundStatus, "metrics" | "gates" | "promotedVersion"> = {};
    if (phase === "Trained") {
      const after = afterTraining(input, r, latestPromoted, actions);
      ({ phase, reason, message } = after);
      verdictFields = after.fields;
      const prevPhase = prevByIndex.get(r.index)?.phase;
      if (phase === "Rejected" && prevPhase !== "Rejected") events.push({ type: "Warning", reason: "RoundRejected", message: `round ${r.index}: ${reason}: ${message}` });
    }
    const prev = prevByIndex.get(r.index);
    const uri = roundUri(spec, r.index);
    if (phase === "Failed" && !r.failure) {
      const record: FailureRecord = { reason: reason!, message: message!, generation: run.generation, failedAt: iso(input.now) };
      actions.push({
        kind: "RecordFailure",
        round: r.index,
        key: `${roundPrefix(spec.artifacts.s3.prefix, r.index)}${ROUND_FILES.failure}`,
        record,
        event: { type: "Warning", reason: "RoundFailed", message: `round ${r.index} failed: ${reason}: ${message}` },
      });
    }
    if (phase === "Pending" && !spec.suspend) {
      actions.push(createJobAction(input, r.index, `${uri}${ROUND_FILES.plan}`, "TrainingStarted", `round ${r.index}: created Job ${trainJobName(run.name, r.index)}`));
    }
    const gpu = gpuSeconds(spec, r.job, prev);
    statuses.push({
      index: r.index,
      slices: plan.newSlices,
      replay: plan.replay,
      phase,
      ...(reason ? { reason } : {}),
      ...(message ? { message } : {}),
      job: r.job?.name ?? prev?.job ?? trainJobName(run.name, r.index),
      ...(plan.model.initCheckpoint ? { initCheckpoint: plan.model.initCheckpoint } : {}),
      ...(TRAINED.has(phase) ? { checkpoint: `${uri}${ROUND_FILES.checkpoint}`, samples: plan.data.samples } : {}),
      ...(gpu !== undefined ? { gpuSeconds: gpu } : {}),
      ...verdictFields,
      ...(r.job?.startTime ?? prev?.startedAt ? { startedAt: r.job?.startTime ?? prev?.startedAt } : {}),
      ...(r.job?.completionTime ?? prev?.finishedAt ? { finishedAt: r.job?.completionTime ?? prev?.finishedAt } : {}),
    });
  }

  const trained = statuses.filter((s) => TRAINED.has(s.phase));
  const compute = computeAccounting(trained.map((s) => ({ index: trained.indexOf(s), replay: s.replay, samples: s.samples ?? 0, gpuSeconds: s.gpuSeconds })));
  const covered = new Set(statuses.filter((s) => s.phase !== "Failed").flatMap((s) => s.slices));
  const consumed = [...covered].sort(compareSliceIds);
  const maxCovered = consumed[consumed.length - 1];
  const current = [...statuses].reverse().find((s) => ACTIVE.has(s.phase) && s.reason !== "AwaitingApproval");
  const slices = input.slices ?? [];
  const late = slices.filter((s) => !covered.has(s.id) && maxCovered !== undefined && compareSliceIds(s.id, maxCovered) < 0).map((s) => s.id);
  const base = { rounds: statuses.slice(-spec.historyLimit), current, compute, consumed, late, events };

  if (current || input.slices === undefined) return { ...base, actions };

  // Which slices would the next round train on?
  const pending = slices.filter((s) => !covered.has(s.id) && !late.includes(s.id)).map((s) => s.id);
  const last = statuses[statuses.length - 1];
  let newSlices: string[];
  let initOverride: { checkpoint: string | null } | undefined;
  if (last?.phase === "Failed") {
    const lastObs = observed[observed.length - 1]!;
    const retry = last.slices.filter((id) => slices.some((s) => s.id === id));
    const fresh = pending.filter((id) => !retry.includes(id));
    const failedGeneration = lastObs.failure?.generation ?? run.generation;
    if (fresh.length === 0 && run.generation <= failedGeneration) {
      return { ...base, actions, waiting: { reason: "RoundFailed", message: `round ${last.index} failed (${last.reason}); waiting for a new slice or a spec change to retry` } };
    }
    const retryPending = retry.length > 0 ? retry : fresh.slice(0, 1);
    newSlices = spec.strategy.roundPolicy === "Latest" ? [...new Set([...retryPending, ...fresh])].sort(compareSliceIds) : retryPending;
    initOverride = { checkpoint: lastObs.plan!.model.initCheckpoint };
  } else {
    if (pending.length === 0) return { ...base, actions };
    newSlices = spec.strategy.roundPolicy === "Latest" ? pending : [pending[0]!];
  }
  if (spec.suspend) {
    return { ...base, actions, waiting: { reason: "Suspended", message: `slices ${newSlices.join(", ")} wait: spec.suspend is true` } };
  }

  const index = (last?.index ?? -1) + 1;
  const mixture = planRound({
    replay: spec.strategy.replay,
    samplesPerRound: spec.strategy.samplesPerRound,
    bufferSamples: spec.strategy.bufferSamples,
    round: trained.length,
    slices: slices.map((s) => ({ id: s.id, shards: s.shards.map((sh) => ({ uri: sh.uri, samples: sh.samples })) })),
    newSliceIds: newSlices,
  });
  if (!mixture.ok) {
    const event: PlannedEvent = { type: "Warning", reason: "PlanFailed", message: `round ${index}: ${mixture.reason}: ${mixture.message}` };
    return { ...base, actions, waiting: { reason: "PlanFailed", message: event.message }, planProblem: event };
  }
  const lastTrained = trained[trained.length - 1];
  let initCheckpoint: string | null = null;
  if (mixture.mixture.warmStart) {
    if (initOverride) initCheckpoint = initOverride.checkpoint;
    else if (spec.strategy.warmStartFrom === "LastPromoted" && input.promotedCheckpoint) initCheckpoint = input.promotedCheckpoint;
    else initCheckpoint = lastTrained?.checkpoint ?? spec.model.initialCheckpoint ?? null;
  }
  const uri = roundUri(spec, index);
  const plan: RoundPlan = {
    schemaVersion: ROUND_PLAN_SCHEMA_VERSION,
    run: { namespace: run.namespace, name: run.name, uid: run.uid },
    round: index,
    newSlices,
    replay: spec.strategy.replay,
    model: { architecture: spec.model.architecture, initCheckpoint },
    data: { sources: mixture.mixture.sources, samples: mixture.mixture.samples },
    optimizer: spec.strategy.optimizer,
    output: { uri },
    checkpointIntervalMinutes: spec.trainer.checkpointIntervalMinutes,
    seed: index,
    s3: { region: spec.source.s3.region, endpoint: spec.source.s3.endpoint ?? null },
  };
  actions.push({ kind: "WritePlan", round: index, key: `${roundPrefix(spec.artifacts.s3.prefix, index)}${ROUND_FILES.plan}`, plan });
  actions.push(
    createJobAction(input, index, `${uri}${ROUND_FILES.plan}`, "RoundStarted", `round ${index} on ${newSlices.join(", ")} (${spec.strategy.replay}, ${initCheckpoint ? `warm start from ${initCheckpoint}` : "from scratch"}): created Job ${trainJobName(run.name, index)}`),
  );
  const planned: RoundStatus = { index, slices: newSlices, replay: spec.strategy.replay, phase: "Pending", job: trainJobName(run.name, index), ...(initCheckpoint ? { initCheckpoint } : {}) };
  return { ...base, rounds: [...statuses, planned].slice(-spec.historyLimit), current: planned, consumed: [...consumed, ...newSlices].sort(compareSliceIds), actions };
}

/**
 * A trained round's way through evaluation, gates and promotion:
 * no eval.json -> Evaluating (an evaluation Job, or in-process) -> gates judged -> Rejected, or
 * Gating until promoted (Auto, or Manual once approved) -> Promoted. A passing round older than
 * the newest promoted one is Passed: promoting it would move the alias backwards.
 */
function afterTraining(
  input: RoundsInput,
  r: RoundObservation,
  latestPromoted: number,
  actions: RoundAction[],
): { phase: RoundPhase; reason?: string; message?: string; fields: Pick<RoundStatus, "metrics" | "gates" | "promotedVersion"> } {
  const { spec } = input;
  const plan = r.plan!;
  if (!r.evaluation) {
    if (r.evalJob?.failure) {
      return { phase: "Rejected", reason: "EvaluationFailed", message: `${r.evalJob.failure.reason}: ${r.evalJob.failure.message}`, fields: {} };
    }
    const toEvaluate = { spec, round: r.index, roundSlices: plan.newSlices, slices: (input.slices ?? []).map((s) => s.id), promoted: input.promoted };
    if (spec.evaluation.runner.mode === "InProcess" || !input.evaluatorImage) {
      if (input.slices !== undefined) actions.push({ kind: "EvaluateInProcess", round: r.index, roundSlices: plan.newSlices });
    } else if (!r.evalJob && input.slices !== undefined) {
      const job = buildEvalJob({ run: input.run, spec, image: input.evaluatorImage, request: toEvaluate });
      actions.push({ kind: "CreateJob", round: r.index, job, event: { type: "Normal", reason: "EvaluationStarted", message: `round ${r.index}: created Job ${job.metadata.name}` } });
    }
    return { phase: "Evaluating", fields: {} };
  }
  const verdict = judgeRound(r.evaluation, spec.evaluation.gates, input.promoted);
  const fields = { ...(verdict.metrics ? { metrics: verdict.metrics } : {}), ...(verdict.gates ? { gates: verdict.gates.map((g) => ({ metric: g.metric, observed: g.observed, threshold: g.threshold, passed: g.passed, message: g.message })) } : {}) };
  if (!verdict.passed) return { phase: "Rejected", reason: verdict.reason, message: verdict.message, fields };
  if (r.promotedVersion !== undefined) return { phase: "Promoted", reason: "GatesPassed", message: verdict.message, fields: { ...fields, promotedVersion: r.promotedVersion } };
  if (!spec.promotion) return { phase: "Passed", reason: "NoPromotion", message: "gates passed; spec.promotion is not set", fields };
  if (r.index < latestPromoted) return { phase: "Passed", reason: "Superseded", message: `gates passed, but a later round is already promoted`, fields };
  if (spec.promotion.mode === "Manual" && !isRoundApproved(input.annotations, r.index)) {
    return { phase: "Gating", reason: "AwaitingApproval", message: `gates passed; approve with: kubectl annotate ccr ${input.run.name} ticclip.dev/approve-round=${r.index}`, fields };
  }
  actions.push({ kind: "Promote", round: r.index, metrics: verdict.metrics });
  return { phase: "Gating", reason: "Promoting", message: verdict.message, fields };
}

function createJobAction(input: RoundsInput, round: number, planUri: string, reason: string, message: string): RoundAction {
  const jobInput = { run: input.run, spec: input.spec, round, planUri };
  return { kind: "CreateJob", round, job: buildTrainJob(jobInput), service: buildRendezvousService(jobInput), event: { type: "Normal", reason, message } };
}
