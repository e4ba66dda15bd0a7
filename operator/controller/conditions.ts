// metav1.Condition bookkeeping, pure: lastTransitionTime moves only when status flips.
import { isoSeconds } from "../api/common.ts";
import { STATUS_LIMITS, type Condition } from "../api/continual-clip-run.ts";
import { boundText } from "./status-bounds.ts";

// The condition catalogue: every condition type a run carries, with its polarity, meaning and the
// reasons the operator sets on it. docs/operations.md's "Condition types" table is checked against it
// (test/unit/controller/conditions.test.ts).
import type { Problem } from "./types.ts";

export type ConditionSpec = {
  /** The status that means healthy ("Either": informational, kstatus ignores it). */
  healthy: "True" | "False" | "Either";
  meaning: string;
  /** The reasons this condition sets itself, each with when. */
  reasons: Record<string, string>;
  /** Other reasons it carries, from a problem found elsewhere (what blocks the run, a Git error). */
  carries?: string;
};

/** Reasons of a run that makes progress: Progressing's reason, copied by Ready=True. */
const PROGRESS_REASONS = {
  RoundStarting: "a round's plan and Job are being created",
  RoundTraining: "a round's trainer Job runs",
  RoundEvaluating: "a trained round is being evaluated",
  RoundPromoting: "an evaluated round is gated and promoted",
  RoundInProgress: "a round in any other phase",
  Suspended: "spec.suspend is true: no new rounds start",
  WaitingForData: "no round to run: waiting for a new slice",
};
const INVALID_SPEC = { InvalidSpec: "the operator rejects the spec; the message names the field" };
const BLOCKED = "the reason of what blocks the run (situations below)";
const AS_EXPECTED = { AsExpected: "nothing blocks the run" };

export const CONDITIONS = {
  Ready: {
    healthy: "True",
    meaning: "nothing keeps the run from making progress; False with the blocking reason otherwise",
    reasons: { ...PROGRESS_REASONS, ...INVALID_SPEC },
    carries: BLOCKED,
  },
  Progressing: {
    healthy: "Either",
    meaning: "a round is under way (True) or the run waits (False)",
    reasons: { ...PROGRESS_REASONS, ...INVALID_SPEC },
  },
  Degraded: {
    healthy: "False",
    meaning: "True for the causes of Stalled except an invalid spec (for dashboards and alerts)",
    reasons: AS_EXPECTED,
    carries: BLOCKED,
  },
  Stalled: {
    healthy: "False",
    meaning: "the run cannot go on without a change in the world or the spec; False again once the cause is gone",
    reasons: { ...AS_EXPECTED, ...INVALID_SPEC },
    carries: BLOCKED,
  },
  // Only on runs that set spec.promotion.git (controller/git.ts).
  GitSynced: {
    healthy: "True",
    meaning: "spec.promotion.git holds the promoted version; only on runs that set spec.promotion.git",
    reasons: {
      Synced: "the branch holds the promoted version",
      Syncing: "the promoted version is being written",
      NothingPromoted: "no version promoted yet",
    },
    carries: "the Git error's reason when False (GitAuthFailed, GitBranchNotFound, ...: docs/gitops.md)",
  },
  // Only while a round trains (controller/progress.ts).
  TrainerStalled: {
    healthy: "False",
    meaning:
      "the training round's samples have not advanced for spec.trainer.stallTimeout, on the operator's clock; only while a round trains",
    reasons: {
      NoProgress: "samples done and phase unchanged for the stall timeout, or a restarted trainer not yet advanced",
      TrainerProgressing: "the trainer's progress.json advances",
    },
  },
} as const satisfies Record<string, ConditionSpec>;

export type ConditionType = keyof typeof CONDITIONS;
export const CONDITION_TYPES = Object.keys(CONDITIONS) as ConditionType[];

export type ConditionUpdate = {
  type: ConditionType;
  status: Condition["status"];
  reason: string;
  message: string;
};

/** Progressing's reason of a round in each phase (RoundInProgress for any other). */
const ROUND_PHASE_REASONS: Record<string, keyof typeof PROGRESS_REASONS> = {
  Pending: "RoundStarting",
  Training: "RoundTraining",
  Trained: "RoundEvaluating",
  Evaluating: "RoundEvaluating",
  Gating: "RoundPromoting",
};

/**
 * The health conditions of a run with a valid spec, in one call: Progressing from the round under
 * way (or why none is), Ready, Degraded and Stalled from what blocks the run (undefined: nothing).
 * kstatus (Flux, kubectl wait, the Argo CD check in docs/operations.md) reads Ready=False alone as
 * InProgress, which would hold a sync wave until its timeout: a run that cannot go on is Stalled
 * (Failed) until the operator sees it recover. Rounds are background work, so they show in
 * Progressing (which kstatus ignores), never in Reconciling: a healthy run training for hours is Current.
 */
export function healthConditions(o: {
  blocked: Problem | undefined;
  active: { index: number; phase: string; message: string } | undefined;
  suspended: boolean;
  watching: string;
}): ConditionUpdate[] {
  const progressing: ConditionUpdate = o.active
    ? {
        type: "Progressing",
        status: "True",
        reason: ROUND_PHASE_REASONS[o.active.phase] ?? "RoundInProgress",
        message: o.active.message,
      }
    : o.suspended
      ? {
          type: "Progressing",
          status: "False",
          reason: "Suspended",
          message: "spec.suspend is true: no new rounds start",
        }
      : {
          type: "Progressing",
          status: "False",
          reason: "WaitingForData",
          message: `watching ${o.watching} for new slices`,
        };
  const b = o.blocked;
  return [
    b
      ? { type: "Ready", status: "False", reason: b.reason, message: b.message }
      : { type: "Ready", status: "True", reason: progressing.reason, message: progressing.message },
    progressing,
    b
      ? { type: "Degraded", status: "True", reason: b.reason, message: b.message }
      : { type: "Degraded", status: "False", reason: "AsExpected", message: "" },
    b
      ? { type: "Stalled", status: "True", reason: b.reason, message: b.message }
      : { type: "Stalled", status: "False", reason: "AsExpected", message: "" },
  ];
}

/** The conditions of a run whose spec the operator rejects. */
export function invalidSpecConditions(message: string): ConditionUpdate[] {
  return (["Ready", "Stalled", "Progressing"] as const).map((type) => ({
    type,
    status: type === "Stalled" ? "True" : "False",
    reason: "InvalidSpec",
    message,
  }));
}

export function setCondition(
  existing: readonly Condition[] | undefined,
  update: ConditionUpdate,
  observedGeneration: number,
  now: Date,
): Condition[] {
  const list = [...(existing ?? [])];
  const i = list.findIndex((c) => c.type === update.type);
  const previous = i >= 0 ? list[i] : undefined;
  const next: Condition = {
    type: update.type,
    status: update.status,
    observedGeneration,
    lastTransitionTime: previous && previous.status === update.status ? previous.lastTransitionTime : isoSeconds(now),
    reason: update.reason,
    message: boundText(update.message, STATUS_LIMITS.message),
  };
  if (i >= 0) list[i] = next;
  else list.push(next);
  return list;
}

export function findCondition(list: readonly Condition[] | undefined, type: ConditionType): Condition | undefined {
  return list?.find((c) => c.type === type);
}
