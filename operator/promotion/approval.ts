// Manual promotion: a round that passed its gates waits until a person approves it by annotating
// the run, e.g. `kubectl annotate ccr b16 ticclip.dev/approve-round=7 --overwrite`.
export const APPROVE_ROUND_ANNOTATION = "ticclip.dev/approve-round";

/** Whether the run's annotations approve promoting `round` (a round index, or a comma-separated list). */
export function isRoundApproved(annotations: Record<string, string> | undefined, round: number): boolean {
  const v = annotations?.[APPROVE_ROUND_ANNOTATION];
  if (!v) return false;
  return v.split(",").some((s) => /^\s*[0-9]+\s*$/.test(s) && Number(s) === round);
}
