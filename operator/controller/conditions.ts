// metav1.Condition bookkeeping, pure: lastTransitionTime moves only when status flips.
import { STATUS_LIMITS, type Condition } from "../api/continual-clip-run.ts";
import { boundText } from "./status-bounds.ts";

// GitSynced: spec.promotion.git follows the alias (controller/git.ts); only on runs that set it.
// TrainerStalled: the training round's samples stopped advancing (controller/progress.ts); only while a round trains.
export const CONDITION_TYPES = ["Ready", "Progressing", "Degraded", "Stalled", "GitSynced", "TrainerStalled"] as const;
export type ConditionType = (typeof CONDITION_TYPES)[number];

export type ConditionUpdate = {
  type: ConditionType;
  status: Condition["status"];
  reason: string;
  message: string;
};

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
    lastTransitionTime:
      previous && previous.status === update.status
        ? previous.lastTransitionTime
        : now.toISOString().replace(/\.\d{3}Z$/, "Z"),
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
