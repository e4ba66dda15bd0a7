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
import { ROUND_FILES, roundUri } from "../api/round-layout.ts";
import { compareSliceIds } from "../api/slice-manifest.ts";
import { computeAccounting } from "../data/compute.ts";
import { trainJobName } from "../kube/objects.ts";
import { afterTraining } from "./after-training.ts";
import { createJobAction, nextRound } from "./next-round.ts";
import { jobCompute, phaseOf, roundStatus, TRAINED, type PhaseOf } from "./round-status.ts";
import { describeSlices } from "./status-bounds.ts";
import type { FailureRecord, PlannedEvent, RoundAction, RoundRecord, RoundsDecision, RoundsInput } from "./types.ts";

export type { RoundObservation, RoundsDecision, RoundsInput } from "./types.ts";

// A round in one of these phases holds the next one back (Gating only while promotion is due, not
// while a Manual approval is awaited).
const ACTIVE: ReadonlySet<RoundPhase> = new Set(["Pending", "Training", "Trained", "Evaluating", "Gating"]);
/** "slice 2016, 2017" or "3000 slices, 2016 to 4999". */
const givenUpText = (ids: string[]) => (ids.length > 3 ? "" : "slice ") + describeSlices({ slices: ids });
const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

export function decideRounds(input: RoundsInput): RoundsDecision {
  const { spec, run } = input;
  const actions: RoundAction[] = [];
  // Records of facts already decided (verdict.json): written after the round actions of this pass.
  const bookkeeping: RoundAction[] = [];
  const prevByIndex = new Map((input.previous ?? []).map((r) => [r.index, r]));
  const oldestPrevious = prevByIndex.size ? Math.min(...prevByIndex.keys()) : -1;
  const observed = [...input.rounds].filter((r) => r.plan).sort((a, b) => a.index - b.index);
  const statuses: RoundRecord[] = [];
  const events: PlannedEvent[] = [];

  // Failed rounds per slice, for spec.strategy.maxAttemptsPerSlice.
  const maxAttempts = spec.strategy.maxAttemptsPerSlice;
  const attempts = new Map<string, { count: number; reason: string }>();
  const newestPassed = Math.max(-1, ...observed.filter((r) => r.verdict?.verdict.passed).map((r) => r.index));
  const latestPromoted = Math.max(-1, ...observed.filter((r) => r.promotedVersion !== undefined).map((r) => r.index));
  for (const r of observed) {
    const prev = prevByIndex.get(r.index);
    let p: PhaseOf & { fields?: Pick<RoundStatus, "metrics" | "gates" | "promotedVersion"> } = phaseOf(r);
    // GPU-seconds outlive the Job (TTL): recorded beside the round once, so totals only grow.
    const spent = jobCompute(spec, r.job);
    if (spent && !r.files.has(ROUND_FILES.compute))
      actions.push({ kind: "RecordCompute", round: r.index, record: spent });
    if (p.phase === "Trained") {
      const after = afterTraining(input, r, latestPromoted, newestPassed);
      actions.push(...after.actions);
      if (after.record) bookkeeping.push(after.record);
      p = after;
      // Once per rejection: a round missing from previous status because it is older than
      // historyLimit was reported when it was still listed.
      const beyondHistory = !prev && r.index < oldestPrevious;
      if (p.phase === "Rejected" && prev?.phase !== "Rejected" && !beyondHistory) {
        events.push({
          type: "Warning",
          reason: "RoundRejected",
          message: `round ${r.index}: ${p.reason}: ${p.message}`,
        });
      }
    }
    const givenUp: string[] = [];
    if (p.phase === "Failed") {
      for (const id of r.plan!.newSlices) {
        const a = { count: (attempts.get(id)?.count ?? 0) + 1, reason: `${p.reason}: ${p.message}` };
        attempts.set(id, a);
        if (a.count === maxAttempts) givenUp.push(id);
      }
    }
    if (p.phase === "Failed" && !r.failure) {
      const record: FailureRecord = {
        reason: p.reason!,
        message: p.message!,
        generation: run.generation,
        failedAt: iso(input.now),
        ...(input.slices ? { slicesKnown: input.slices.map((s) => s.id) } : {}),
      };
      const message = `round ${r.index} failed: ${p.reason}: ${p.message}`;
      const sliceFailed: PlannedEvent | undefined = givenUp.length
        ? {
            type: "Warning",
            reason: "SliceFailed",
            message:
              `${givenUpText(givenUp)}: ${maxAttempts} rounds failed, no more retries: ` + `${p.reason}: ${p.message}`,
          }
        : undefined;
      actions.push({
        kind: "RecordFailure",
        round: r.index,
        record,
        event: { type: "Warning", reason: "RoundFailed", message },
        sliceFailed,
      });
    }
    if (p.phase === "Pending" && !spec.suspend) {
      const message = `round ${r.index}: created Job ${trainJobName(run.name, r.index)}`;
      actions.push(createJobAction(input, r.index, "TrainingStarted", message));
    }
    statuses.push(roundStatus(spec, run, r, p, prev));
  }

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
  const slices = input.slices ?? [];
  const isLate = (id: string) =>
    !covered.has(id) && !exhausted.has(id) && maxCovered !== undefined && compareSliceIds(id, maxCovered) < 0;
  const late = slices.filter((s) => isLate(s.id)).map((s) => s.id);
  actions.push(...bookkeeping);
  const base = {
    rounds: statuses.slice(-spec.historyLimit),
    current,
    compute,
    consumed,
    late,
    events,
    actions,
    failedSlices,
  };

  // A plan that cannot be read holds everything after it: planning past it would reuse its index.
  const unreadable = input.rounds.find((r) => !r.plan && r.planProblem !== undefined);
  if (unreadable) {
    const uri = `${roundUri(spec.artifacts.s3, unreadable.index)}${ROUND_FILES.plan}`;
    const message = `${uri} cannot be used (${unreadable.planProblem}); fix or delete that round folder`;
    return { ...base, waiting: { reason: "RoundPlanUnreadable", message } };
  }
  if (current || input.slices === undefined) return base;

  const pending = slices
    .filter((s) => !covered.has(s.id) && !late.includes(s.id) && !exhausted.has(s.id))
    .map((s) => s.id);
  const next = nextRound(input, slices, pending, exhausted, statuses, trained, observed[observed.length - 1]);
  if (next.kind === "none") {
    return {
      ...base,
      ...(next.waiting ? { waiting: next.waiting } : {}),
      ...(next.planProblem ? { planProblem: next.planProblem } : {}),
    };
  }
  return {
    ...base,
    rounds: [...statuses, next.planned].slice(-spec.historyLimit),
    current: next.planned,
    consumed: [...consumed, ...next.planned.slices].sort(compareSliceIds),
    actions: [...actions.filter((a) => !bookkeeping.includes(a)), ...next.actions, ...bookkeeping],
  };
}
