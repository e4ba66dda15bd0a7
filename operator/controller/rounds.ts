// The round state machine, pure: observed rounds (S3 markers, plans, Jobs) and slices in, actions
// and the rounds part of status out. No I/O, no clock. It runs the per-phase sub-deciders in order,
// as Flux's source-controller runs its sub-reconcilers:
//   round-status.ts   each observed round's phase (Pending, Training, Trained, Failed)
//   after-training.ts a trained round's evaluation, gates and promotion
//   next-round.ts     which slices the next round trains on, from which checkpoint
//
// Source of truth is the world, not status: a round exists when rounds/<NNNN>/plan.json exists;
// it is Trained when the trainer wrote _SUCCESS; Failed when failed.json exists or its Job failed.
// Status can therefore be wiped and rebuilt.
import type { RoundPhase, RoundStatus } from "../api/continual-clip-run.ts";
import { isoSeconds } from "../api/common.ts";
import { ROUND_FILES, roundUri } from "../api/round-layout.ts";
import { compareSliceIds } from "../api/slice-manifest.ts";
import { computeAccounting } from "../data/compute.ts";
import { trainJobName } from "../kube/objects.ts";
import { afterTraining } from "./after-training.ts";
import { createJobAction, nextRound } from "./next-round.ts";
import { jobCompute, phaseOf, roundStatus, TRAINED, type PhaseOf } from "./round-status.ts";
import { describeSlices } from "./status-bounds.ts";
import type {
  FailureRecord,
  PlannedEvent,
  RoundAction,
  RoundObservation,
  RoundRecord,
  RoundsDecision,
  RoundsInput,
} from "./types.ts";

export type { RoundObservation, RoundsDecision, RoundsInput } from "./types.ts";

// A round in one of these phases holds the next one back (Gating only while promotion is due, not
// while a Manual approval is awaited).
const ACTIVE: ReadonlySet<RoundPhase> = new Set(["Pending", "Training", "Trained", "Evaluating", "Gating"]);
/** "slice 2016, 2017" or "3000 slices, 2016 to 4999". */
const givenUpText = (ids: string[]) => (ids.length > 3 ? "" : "slice ") + describeSlices({ slices: ids });

/**
 * Whose round folder this is, by its plan (a round folder belongs to the run named in its plan):
 * this run's; its predecessor's (a run deleted and created again under the same namespace and name,
 * so a new uid); or another run's. Plans without a uid (written before uids were recorded) belong to
 * the run of that namespace and name.
 */
export function roundOwner(
  run: { namespace: string; name: string; uid: string },
  plan: { run: { namespace: string; name: string; uid?: string | undefined } },
): "own" | "predecessor" | "foreign" {
  const p = plan.run;
  if (p.namespace !== run.namespace || p.name !== run.name) return "foreign";
  return p.uid === undefined || p.uid === run.uid ? "own" : "predecessor";
}

/**
 * Why this run leaves a round of its predecessor alone, or undefined when it adopts it: a finished
 * round (trained, or recorded failed) is history this run builds on; one that did not finish, or
 * whose slices a later round of this run trains again, is left as it is and its slices are trained
 * in a new round of this run.
 */
function predecessorLeft(
  run: RoundsInput["run"],
  r: RoundObservation,
  observed: RoundObservation[],
): string | undefined {
  if (roundOwner(run, r.plan!) !== "predecessor") return undefined;
  const uid = r.plan!.run.uid;
  const retrain = observed.find(
    (o) =>
      o.index > r.index &&
      roundOwner(run, o.plan!) === "own" &&
      o.plan!.newSlices.some((id) => r.plan!.newSlices.includes(id)),
  );
  const started = `was started by an earlier run ${run.namespace}/${run.name} (uid ${uid})`;
  if (retrain) return `${started}; round ${retrain.index} of this run trains its slices again`;
  if (r.files.has(ROUND_FILES.success) || r.failure) return undefined;
  return `${started} and did not finish; this run leaves its folder alone (its Job may still be running) and trains its slices in a new round`;
}

/**
 * The round state machine. A round folder of another run (two runs on one artifacts prefix) stops
 * this run: nothing is planned, created or written, and it is Stalled naming the folder.
 */
export function decideRounds(input: RoundsInput): RoundsDecision {
  const foreign = input.rounds.find((r) => r.plan && roundOwner(input.run, r.plan) === "foreign");
  if (!foreign) return decideOwnRounds(input);
  const own = decideOwnRounds({
    ...input,
    rounds: input.rounds.filter((r) => !r.plan || roundOwner(input.run, r.plan) !== "foreign"),
    slices: undefined,
  });
  const other = foreign.plan!.run;
  const uri = `${roundUri(input.spec.artifacts.s3, foreign.index)}${ROUND_FILES.plan}`;
  const message = `spec.artifacts.s3: ${uri} belongs to run ${other.namespace}/${other.name}${other.uid ? ` (uid ${other.uid})` : ""}; runs must not share an artifacts prefix, and this run writes nothing there`;
  return { ...own, actions: [], waiting: { reason: "RoundFolderOwnedByAnotherRun", message } };
}

/**
 * This run's rounds, top to bottom: each observed round decided in index order (walkRounds), what
 * they add up to (tallyRounds), then either what holds new rounds back or the next round.
 */
function decideOwnRounds(input: RoundsInput): RoundsDecision {
  const { spec } = input;
  const observed = [...input.rounds].filter((r) => r.plan).sort((a, b) => a.index - b.index);
  const walk = walkRounds(input, observed);
  const tally = tallyRounds(input, walk);
  const base = {
    rounds: walk.statuses.slice(-spec.historyLimit),
    current: tally.current,
    compute: tally.compute,
    consumed: tally.consumed,
    late: tally.late,
    events: walk.events,
    actions: [...walk.actions, ...walk.bookkeeping],
    failedSlices: tally.failedSlices,
  };

  // A plan that cannot be read holds everything after it: planning past it would reuse its index.
  const unreadable = input.rounds.find((r) => !r.plan && r.planProblem !== undefined);
  if (unreadable) {
    const uri = `${roundUri(spec.artifacts.s3, unreadable.index)}${ROUND_FILES.plan}`;
    const message = `${uri} cannot be used (${unreadable.planProblem}); fix or delete that round folder`;
    return { ...base, waiting: { reason: "RoundPlanUnreadable", message } };
  }
  if (tally.current || input.slices === undefined) return base;

  const slices = input.slices;
  const pending = slices
    .filter((s) => !tally.covered.has(s.id) && !tally.late.includes(s.id) && !tally.exhausted.has(s.id))
    .map((s) => s.id);
  const next = nextRound(input, slices, pending, tally.exhausted, walk.statuses, tally.trained, observed.at(-1));
  if (next.kind === "none") {
    return {
      ...base,
      ...(next.waiting ? { waiting: next.waiting } : {}),
      ...(next.planProblem ? { planProblem: next.planProblem } : {}),
    };
  }
  return {
    ...base,
    rounds: [...walk.statuses, next.planned].slice(-spec.historyLimit),
    current: next.planned,
    consumed: [...tally.consumed, ...next.planned.slices].sort(compareSliceIds),
    // The new round's plan and Job go before the bookkeeping of facts already decided.
    actions: [...walk.actions, ...next.actions, ...walk.bookkeeping],
  };
}

/** Failed rounds per slice, for spec.strategy.maxAttemptsPerSlice. */
type Attempts = Map<string, { count: number; reason: string }>;

/** What walking the observed rounds decided, round by round. */
type RoundWalk = {
  statuses: RoundRecord[];
  actions: RoundAction[];
  /** Records of facts already decided (verdict.json): written after the round actions of this pass. */
  bookkeeping: RoundAction[];
  events: PlannedEvent[];
  attempts: Attempts;
};

/** Each observed round in index order: its phase and status, and what to do for it. */
function walkRounds(input: RoundsInput, observed: RoundObservation[]): RoundWalk {
  const { spec, run } = input;
  const prevByIndex = new Map((input.previous ?? []).map((r) => [r.index, r]));
  const oldestPrevious = prevByIndex.size ? Math.min(...prevByIndex.keys()) : -1;
  const newestPassed = Math.max(-1, ...observed.filter((r) => r.verdict?.verdict.passed).map((r) => r.index));
  const latestPromoted = Math.max(-1, ...observed.filter((r) => r.promotedVersion !== undefined).map((r) => r.index));
  const walk: RoundWalk = { statuses: [], actions: [], bookkeeping: [], events: [], attempts: new Map() };
  for (const r of observed) {
    const prev = prevByIndex.get(r.index);
    const left = predecessorLeft(run, r, observed);
    if (left) {
      // Not this run's to finish: no Job, no write into its folder (its Job may still be running).
      if (prev?.reason !== "PredecessorRound")
        walk.events.push({ type: "Warning", reason: "PredecessorRound", message: `round ${r.index}: ${left}` });
      walk.statuses.push(
        roundStatus(spec, run, r, { phase: "Failed", reason: "PredecessorRound", message: left }, prev),
      );
      continue;
    }
    // GPU-seconds outlive the Job (TTL): recorded beside the round once, so totals only grow.
    const spent = jobCompute(spec, r.job);
    if (spent && !r.files.has(ROUND_FILES.compute))
      walk.actions.push({ kind: "RecordCompute", round: r.index, record: spent });
    let p: RoundPhaseDecision = phaseOf(r);
    if (p.phase === "Trained") {
      // A round missing from previous status because it is older than historyLimit was reported
      // when it was still listed.
      const beyondHistory = !prev && r.index < oldestPrevious;
      p = judgeTrainedRound(input, r, prev, beyondHistory, latestPromoted, newestPassed, walk);
    }
    if (p.phase === "Failed") {
      const givenUp = countFailure(walk.attempts, r, p, spec.strategy.maxAttemptsPerSlice);
      if (!r.failure) walk.actions.push(recordFailure(input, r, p, givenUp));
    }
    if (p.phase === "Pending" && !spec.suspend) {
      const message = `round ${r.index}: created Job ${trainJobName(run.name, r.index)}`;
      walk.actions.push(createJobAction(input, r.index, "TrainingStarted", message));
    }
    walk.statuses.push(roundStatus(spec, run, r, p, prev));
  }
  return walk;
}

/** A round's phase as decided, with what evaluation added (metrics, gates, its promoted version). */
type RoundPhaseDecision = PhaseOf & { fields?: Pick<RoundStatus, "metrics" | "gates" | "promotedVersion"> };

/**
 * A trained round's evaluation, gates and promotion (after-training.ts), with its events once per
 * transition: NotPromotable, RoundRejected.
 */
function judgeTrainedRound(
  input: RoundsInput,
  r: RoundObservation,
  prev: RoundStatus | undefined,
  beyondHistory: boolean,
  latestPromoted: number,
  newestPassed: number,
  walk: RoundWalk,
): RoundPhaseDecision {
  const after = afterTraining(input, r, latestPromoted, newestPassed);
  walk.actions.push(...after.actions);
  if (after.record) walk.bookkeeping.push(after.record);
  if (after.reason === "NotPromotable" && prev?.reason !== "NotPromotable" && !beyondHistory) {
    walk.events.push({ type: "Warning", reason: "NotPromotable", message: `round ${r.index}: ${after.message}` });
  }
  if (after.phase === "Rejected" && prev?.phase !== "Rejected" && !beyondHistory) {
    walk.events.push({
      type: "Warning",
      reason: "RoundRejected",
      message: `round ${r.index}: ${after.reason}: ${after.message}`,
    });
  }
  return after;
}

/**
 * Counts a failed round against its slice, and returns the slices given up on with it. A failed
 * round of several slices (roundPolicy Latest) cannot say which one failed it: it counts against
 * none, and its slices are then retried one at a time (next-round.ts), where a failure does count.
 * Otherwise good slices batched with a bad one would be given up with it.
 */
function countFailure(attempts: Attempts, r: RoundObservation, p: PhaseOf, maxAttempts: number): string[] {
  const givenUp: string[] = [];
  if (r.plan!.newSlices.length !== 1) return givenUp;
  for (const id of r.plan!.newSlices) {
    const a = { count: (attempts.get(id)?.count ?? 0) + 1, reason: `${p.reason}: ${p.message}` };
    attempts.set(id, a);
    if (a.count === maxAttempts) givenUp.push(id);
  }
  return givenUp;
}

/** failed.json for a round that failed without one, with RoundFailed, and SliceFailed for slices given up. */
function recordFailure(input: RoundsInput, r: RoundObservation, p: PhaseOf, givenUp: string[]): RoundAction {
  const record: FailureRecord = {
    reason: p.reason!,
    message: p.message!,
    generation: input.run.generation,
    failedAt: isoSeconds(input.now),
    ...(input.slices ? { slicesKnown: input.slices.map((s) => s.id) } : {}),
  };
  const maxAttempts = input.spec.strategy.maxAttemptsPerSlice;
  const sliceFailed: PlannedEvent | undefined = givenUp.length
    ? {
        type: "Warning",
        reason: "SliceFailed",
        message: `${givenUpText(givenUp)}: ${maxAttempts} rounds failed, no more retries: ${p.reason}: ${p.message}`,
      }
    : undefined;
  return {
    kind: "RecordFailure",
    round: r.index,
    record,
    event: { type: "Warning", reason: "RoundFailed", message: `round ${r.index} failed: ${p.reason}: ${p.message}` },
    sliceFailed,
  };
}

/**
 * What the walked rounds add up to: compute, the slices covered, consumed, given up and late, and
 * the active round (the newest one that holds the next back).
 */
function tallyRounds(input: RoundsInput, walk: RoundWalk) {
  const { statuses, attempts } = walk;
  const maxAttempts = input.spec.strategy.maxAttemptsPerSlice;
  const trained = statuses.filter((s) => TRAINED.has(s.phase));
  const compute = computeAccounting(
    trained.map((s, index) => ({ index, replay: s.replay, samples: s.samples ?? 0, gpuSeconds: s.gpuSeconds })),
  );
  const covered = new Set(statuses.filter((s) => s.phase !== "Failed").flatMap((s) => s.slices));
  const failedSlices = [...attempts]
    .filter(([id, a]) => a.count >= maxAttempts && !covered.has(id))
    .map(([id, a]) => ({ id, reason: a.reason, attempts: a.count }));
  const exhausted = new Set(failedSlices.map((f) => f.id));
  const consumed = [...covered].sort(compareSliceIds);
  const maxCovered = consumed[consumed.length - 1];
  const current = [...statuses].reverse().find((s) => ACTIVE.has(s.phase) && s.reason !== "AwaitingApproval");
  const isLate = (id: string) =>
    !covered.has(id) && !exhausted.has(id) && maxCovered !== undefined && compareSliceIds(id, maxCovered) < 0;
  const late = (input.slices ?? []).filter((s) => isLate(s.id)).map((s) => s.id);
  return { trained, compute, covered, failedSlices, exhausted, consumed, current, late };
}
