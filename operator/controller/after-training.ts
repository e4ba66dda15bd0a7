// Sub-decider for a trained round: evaluation, gates and promotion. Pure.
//   no eval.json -> Evaluating (an evaluation Job, or in-process) -> gates judged -> Rejected, or
//   Gating until promoted (Auto, or Manual once approved) -> Promoted.
// A passing round older than the newest promoted one is Passed: promoting it would move the alias
// backwards.
import type { RoundPhase, RoundStatus } from "../api/continual-clip-run.ts";
import { buildEvalJob } from "../evaluation/job.ts";
import type { RoundToEvaluate } from "../evaluation/request.ts";
import { judgeRound } from "../evaluation/verdict.ts";
import { isRoundApproved } from "../promotion/approval.ts";
import type { RoundAction, RoundObservation, RoundsInput } from "./types.ts";

export type AfterTraining = {
  phase: RoundPhase;
  reason?: string;
  message?: string;
  fields: Pick<RoundStatus, "metrics" | "gates" | "promotedVersion">;
  actions: RoundAction[];
  /** verdict.json to write (bookkeeping: done after the round's other actions). */
  record?: RoundAction | undefined;
};

/** The one request both evaluation paths (Job and in-process) score a round with. */
export function evaluationRequest(input: RoundsInput, r: RoundObservation): RoundToEvaluate {
  return {
    spec: input.spec,
    round: r.index,
    roundSlices: r.plan!.newSlices,
    slices: (input.slices ?? []).map((s) => s.id),
    promoted: input.promoted,
  };
}

/**
 * latestPromoted: the newest round made a version; newestPassed: the newest round whose recorded
 * verdict passed. Only the newest passing round may be promoted.
 */
export function afterTraining(
  input: RoundsInput,
  r: RoundObservation,
  latestPromoted: number,
  newestPassed = -1,
): AfterTraining {
  const { spec } = input;
  if (!r.evaluation) {
    if (r.evalJob?.failure) {
      const message = `${r.evalJob.failure.reason}: ${r.evalJob.failure.message}`;
      return { phase: "Rejected", reason: "EvaluationFailed", message, fields: {}, actions: [] };
    }
    // Evaluation waits for a complete discovery pass: it scores the slices known so far.
    if (input.slices === undefined) return { phase: "Evaluating", fields: {}, actions: [] };
    const request = evaluationRequest(input, r);
    if (spec.evaluation.runner.mode === "InProcess" || !input.evaluatorImage) {
      return { phase: "Evaluating", fields: {}, actions: [{ kind: "EvaluateInProcess", round: r.index, request }] };
    }
    if (r.evalJob) return { phase: "Evaluating", fields: {}, actions: [] };
    const job = buildEvalJob({ run: input.run, spec, image: input.evaluatorImage, request });
    const event = {
      type: "Normal" as const,
      reason: "EvaluationStarted",
      message: `round ${r.index}: created Job ${job.metadata.name}`,
    };
    return { phase: "Evaluating", fields: {}, actions: [{ kind: "CreateJob", round: r.index, job, event }] };
  }
  // Judged once: tightening a gate later does not reject the serving round, loosening one does not
  // promote old rejected rounds one after another. A new eval.json (re-evaluation) is judged anew.
  const ev = r.evaluation;
  const recorded = r.verdict?.evaluatedAt === ev.evaluatedAt ? r.verdict.verdict : undefined;
  // observe.ts keeps eval.json whole until a verdict for it is recorded, so one of the two is here.
  const verdict = recorded ?? ("judged" in ev ? undefined : judgeRound(ev, spec.evaluation.gates, input.promoted));
  if (!verdict) throw new Error(`round ${r.index}: eval.json was judged but verdict.json is not its verdict`);
  const record: RoundAction | undefined = recorded
    ? undefined
    : {
        kind: "RecordVerdict",
        round: r.index,
        record: {
          evaluatedAt: ev.evaluatedAt,
          judgedAt: input.now.toISOString(),
          gates: spec.evaluation.gates,
          verdict,
        },
        replace: r.verdict !== undefined,
      };
  const fields = {
    ...(verdict.metrics ? { metrics: verdict.metrics } : {}),
    ...(verdict.gates
      ? {
          gates: verdict.gates.map((g) => ({
            metric: g.metric,
            observed: g.observed,
            threshold: g.threshold,
            passed: g.passed,
            message: g.message,
          })),
        }
      : {}),
  };
  const none: RoundAction[] = [];
  if (!verdict.passed)
    return { phase: "Rejected", reason: verdict.reason, message: verdict.message, fields, actions: none, record };
  if (r.promotedVersion !== undefined) {
    return {
      phase: "Promoted",
      reason: "GatesPassed",
      message: verdict.message,
      fields: { ...fields, promotedVersion: r.promotedVersion },
      actions: none,
      record,
    };
  }
  if (!spec.promotion)
    return {
      phase: "Passed",
      reason: "NoPromotion",
      message: "gates passed; spec.promotion is not set",
      fields,
      actions: none,
      record,
    };
  if (r.index < latestPromoted || r.index < newestPassed) {
    return {
      phase: "Passed",
      reason: "Superseded",
      message: `gates passed, but a later round is already promoted or passed`,
      fields,
      actions: none,
      record,
    };
  }
  if (spec.promotion.mode === "Manual" && !isRoundApproved(input.annotations, r.index)) {
    const message = `gates passed; approve with: kubectl annotate ccr ${input.run.name} ticclip.dev/approve-round=${r.index}`;
    return { phase: "Gating", reason: "AwaitingApproval", message, fields, actions: none, record };
  }
  const promote: RoundAction = { kind: "Promote", round: r.index, metrics: verdict.metrics };
  return { phase: "Gating", reason: "Promoting", message: verdict.message, fields, actions: [promote], record };
}
