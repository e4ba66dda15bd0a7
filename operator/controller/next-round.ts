// Sub-decider for the next round: which slices it trains on (slice selection and the retry
// policy), where it starts from (warm start), and its RoundPlan and Job. Pure.
//
// Failure policy: a failed round consumes nothing. Its slices are retried by the next round, which
// starts when a new valid slice arrives or the spec changes (a new generation), warm-starting from
// the same checkpoint the failed round used. Retrying on nothing new would fail the same way.
// Under roundPolicy Latest, slices that failed a round train one at a time until they are trained
// or given up, so a bad slice cannot spend the attempts of the good ones batched with it.
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import { ROUND_FILES, roundUri } from "../api/round-layout.ts";
import { ROUND_PLAN_SCHEMA_VERSION, type RoundPlan } from "../api/round-plan.ts";
import { planConnection } from "../api/s3-connection.ts";
import { compareSliceIds } from "../api/slice-manifest.ts";
import { planRound, roundMerge, roundSchedule, type RoundMixture } from "../data/planner.ts";
import type { Slice } from "../data/validate.ts";
import { trainJobName } from "../kube/objects.ts";
import { buildRendezvousService, buildTrainJob } from "../training/job.ts";
import { describeSlices } from "./status-bounds.ts";
import type { PlannedEvent, Problem, RoundAction, RoundObservation, RoundRecord, RoundsInput } from "./types.ts";

export type NextRound =
  | { kind: "none"; waiting?: Problem | undefined; planProblem?: PlannedEvent | undefined }
  | { kind: "start"; actions: RoundAction[]; planned: RoundRecord };

/** Creates a round's training Job (and its rendezvous Service for several nodes). */
export function createJobAction(input: RoundsInput, round: number, reason: string, message: string): RoundAction {
  const planUri = `${roundUri(input.spec.artifacts.s3, round)}${ROUND_FILES.plan}`;
  const jobInput = { run: input.run, spec: input.spec, round, planUri };
  return {
    kind: "CreateJob",
    round,
    job: buildTrainJob(jobInput),
    service: buildRendezvousService(jobInput),
    event: { type: "Normal", reason, message },
  };
}

type Selection =
  | { newSlices: string[]; initOverride?: { checkpoint: string | null } | undefined }
  | { waiting: Problem };

/**
 * Which slices the next round trains on, or why none starts; undefined when nothing is pending.
 * After a failed round its slices are retried only once something changed since the failure (a
 * slice that was not there, or a new generation of the spec); retrying on the same world would
 * fail the same way and burn the same pods. Slices given up on (`exhausted`) are skipped.
 */
function selectSlices(
  input: RoundsInput,
  slices: Slice[],
  pending: string[],
  exhausted: ReadonlySet<string>,
  last: RoundRecord | undefined,
  lastObserved: RoundObservation | undefined,
  suspects: ReadonlySet<string>,
): Selection | undefined {
  const { spec, run } = input;
  // Latest coalesces waiting slices, except while one of them has failed a round: then one slice
  // at a time, oldest first, so good slices never spend their attempts with a bad one.
  const latest = (ids: string[]) => (ids.some((id) => suspects.has(id)) ? ids.slice(0, 1) : ids);
  if (last?.phase === "Failed") {
    const retry = last.slices.filter((id) => slices.some((s) => s.id === id) && !exhausted.has(id));
    const fresh = pending.filter((id) => !retry.includes(id));
    const initOverride = { checkpoint: lastObserved!.plan!.model.initCheckpoint };
    if (retry.length === 0) {
      // Every slice of the failed round was given up on (or is gone): move on to the next one.
      if (fresh.length === 0) return undefined;
      return { newSlices: spec.strategy.roundPolicy === "Latest" ? latest(fresh) : [fresh[0]!], initOverride };
    }
    const failedGeneration = lastObserved?.failure?.generation ?? run.generation;
    // Not yet recorded (failed.json is written in this pass): what exists now is what it will record.
    const known = new Set(lastObserved?.failure ? (lastObserved.failure.slicesKnown ?? []) : slices.map((s) => s.id));
    const arrived =
      lastObserved?.failure && !lastObserved.failure.slicesKnown
        ? fresh.length > 0
        : slices.some((s) => !known.has(s.id));
    // A predecessor's round left unfinished failed nothing of this run's: its slices train at once.
    const waits = last.reason !== "PredecessorRound";
    if (waits && !arrived && run.generation <= failedGeneration) {
      const message = `round ${last.index} failed (${last.reason}); waiting for a new slice or a spec change to retry`;
      return { waiting: { reason: "RoundFailed", message } };
    }
    const newSlices =
      spec.strategy.roundPolicy === "Latest" ? latest([...new Set([...retry, ...fresh])].sort(compareSliceIds)) : retry;
    return { newSlices, initOverride };
  }
  if (pending.length === 0) return undefined;
  return { newSlices: spec.strategy.roundPolicy === "Latest" ? latest(pending) : [pending[0]!] };
}

/** The checkpoint a warm-started round starts from. */
function warmStartFrom(
  spec: ContinualClipRunSpec,
  input: RoundsInput,
  lastTrained: RoundRecord | undefined,
  initOverride: { checkpoint: string | null } | undefined,
): string | null {
  if (initOverride) return initOverride.checkpoint;
  if (spec.strategy.warmStartFrom === "LastPromoted" && input.promotedCheckpoint) return input.promotedCheckpoint;
  return lastTrained?.checkpoint ?? spec.model.initialCheckpoint ?? null;
}

export function nextRound(
  input: RoundsInput,
  slices: Slice[],
  pending: string[],
  exhausted: ReadonlySet<string>,
  statuses: RoundRecord[],
  trained: RoundRecord[],
  lastObserved: RoundObservation | undefined,
): NextRound {
  const { spec, run } = input;
  const last = statuses[statuses.length - 1];
  // Slices that failed a round of this run (a predecessor's unfinished round failed nothing).
  const suspects = new Set(
    statuses.filter((r) => r.phase === "Failed" && r.reason !== "PredecessorRound").flatMap((r) => r.slices),
  );
  const selection = selectSlices(input, slices, pending, exhausted, last, lastObserved, suspects);
  if (!selection) return { kind: "none" };
  if ("waiting" in selection) return { kind: "none", waiting: selection.waiting };
  const { newSlices, initOverride } = selection;
  if (spec.suspend) {
    return {
      kind: "none",
      waiting: {
        reason: "Suspended",
        message: `slices ${describeSlices({ slices: newSlices })} wait: spec.suspend is true`,
      },
    };
  }

  const index = (last?.index ?? -1) + 1;
  const mixture = mixtureOf(spec, slices, newSlices, trained.length);
  if (!mixture.ok) {
    const event: PlannedEvent = {
      type: "Warning",
      reason: "PlanFailed",
      message: `round ${index}: ${mixture.reason}: ${mixture.message}`,
    };
    return { kind: "none", waiting: { reason: "PlanFailed", message: event.message }, planProblem: event };
  }
  // Every strategy starts from the same model: Restart and Oracle from spec.model.initialCheckpoint
  // (or from scratch without one), the others warm-start from a trained round after round 0.
  const warm = mixture.mixture.warmStart;
  const initCheckpoint = warm
    ? warmStartFrom(spec, input, trained[trained.length - 1], initOverride)
    : (spec.model.initialCheckpoint ?? null);
  // Warmup as in TiC-CLIP: on rounds trained from scratch (Restart, Oracle, or no checkpoint to start
  // from); warm-started rounds use warmStartWarmupSteps (none by default).
  const fromScratch = !warm || initCheckpoint === null;
  const plan = planOf(input, { index, newSlices, mixture: mixture.mixture, initCheckpoint, fromScratch });
  const start = `${spec.strategy.replay}, ${initCheckpoint ? `warm start from ${initCheckpoint}` : "from scratch"}`;
  const on = describeSlices({ slices: newSlices });
  const message = `round ${index} on ${on} (${start}): created Job ${trainJobName(run.name, index)}`;
  const actions: RoundAction[] = [
    { kind: "WritePlan", round: index, plan },
    createJobAction(input, index, "RoundStarted", message),
  ];
  const planned: RoundRecord = {
    index,
    slices: newSlices,
    replay: spec.strategy.replay,
    phase: "Pending",
    job: trainJobName(run.name, index),
    ...(initCheckpoint ? { initCheckpoint } : {}),
  };
  return { kind: "start", actions, planned };
}

/** The planner's mixture for a round on `newSlices`, the `round`-th trained (its budget under Oracle). */
function mixtureOf(spec: ContinualClipRunSpec, slices: Slice[], newSlices: string[], round: number) {
  return planRound({
    replay: spec.strategy.replay,
    samplesPerRound: spec.strategy.samplesPerRound,
    bufferSamples: spec.strategy.bufferSamples,
    round,
    slices: slices.map((s) => ({
      id: s.id,
      shards: s.shards.map((sh) => ({ uri: sh.uri, samples: sh.samples })),
      jsonCaptionField: s.jsonCaptionField,
      heldOutFraction: s.heldOutFraction,
    })),
    newSliceIds: newSlices,
  });
}

/** The RoundPlan the trainer reads: what to train on, from where, and how. */
function planOf(
  { spec, run }: RoundsInput,
  r: { index: number; newSlices: string[]; mixture: RoundMixture; initCheckpoint: string | null; fromScratch: boolean },
): RoundPlan {
  return {
    schemaVersion: ROUND_PLAN_SCHEMA_VERSION,
    run: { namespace: run.namespace, name: run.name, uid: run.uid },
    round: r.index,
    newSlices: r.newSlices,
    replay: spec.strategy.replay,
    model: { architecture: spec.model.architecture, initCheckpoint: r.initCheckpoint },
    data: {
      sources: r.mixture.sources,
      samples: r.mixture.samples,
      maxSkippedFraction: spec.trainer.maxSkippedFraction,
    },
    optimizer: {
      ...planOptimizer(spec.strategy.optimizer, !r.fromScratch),
      ...roundSchedule(spec.strategy.optimizer, !r.fromScratch),
    },
    ...roundMerge(spec.strategy.merge, !r.fromScratch),
    output: { uri: roundUri(spec.artifacts.s3, r.index) },
    checkpointIntervalMinutes: spec.trainer.checkpointIntervalMinutes,
    seed: r.index,
    s3: planConnection(spec.source.s3),
  };
}

/**
 * The plan's optimizer (the RoundPlan schema is strict: only what the trainer reads). One warmup:
 * warmupSteps for rounds trained from scratch, warmStartWarmupSteps for warm-started ones.
 */
function planOptimizer(o: ContinualClipRunSpec["strategy"]["optimizer"], warmStarted: boolean): RoundPlan["optimizer"] {
  const { lr, weightDecay, batchSize, precision } = o;
  return { lr, weightDecay, batchSize, precision, warmupSteps: warmStarted ? o.warmStartWarmupSteps : o.warmupSteps };
}
