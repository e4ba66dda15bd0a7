// Sub-decider for a trained round: evaluation, gates and promotion. Pure.
//   no eval.json -> Evaluating (an evaluation Job, or in-process) -> gates judged -> Rejected, or
//   Gating until promoted (Auto, or Manual once approved) -> Promoted.
// A passing round older than the newest promoted one is Passed: promoting it would move the alias
// backwards.
import { withSlash } from "../api/common.ts";
import { createHash } from "node:crypto";
import type { RoundPhase, RoundStatus } from "../api/continual-clip-run.ts";
import { EVAL_SCHEMA_VERSION, type EvalResult } from "../api/eval-result.ts";
import { PROMOTED_FILES } from "../api/promotion.ts";
import { roundUri } from "../api/round-layout.ts";
import { buildEvalJob } from "../evaluation/job.ts";
import { evalRequestFor, type RoundToEvaluate } from "../evaluation/request.ts";
import { judgeRound, type RoundVerdict } from "../evaluation/verdict.ts";
import { isRoundApproved } from "../promotion/approval.ts";
import { EVALUATED_FILES } from "../promotion/versions.ts";
import type { PlannedEvent, RoundAction, RoundObservation, RoundsInput } from "./types.ts";

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
    run: input.run,
    round: r.index,
    roundSlices: r.plan!.newSlices,
    slices: (input.slices ?? []).map((s) => s.id),
    promoted: input.promoted,
  };
}

/**
 * Why the round's eval.json is not the evaluation of this round as it is now, or undefined when it
 * is: it must name this round and its folder, and have scored the encoders the folder holds
 * (candidate.sha256 against what observe read). "unknown": the encoders' digests were not read.
 */
export function evaluationMismatch(input: RoundsInput, r: RoundObservation): string | "unknown" | undefined {
  const ev = r.evaluation;
  if (!ev) return undefined;
  const uri = roundUri(input.spec.artifacts.s3, r.index);
  const compare = (scored: { image: string; text: string }): string | "unknown" | undefined => {
    const d = r.digests;
    if (!d) return "unknown";
    for (const key of ["image", "text"] as const) {
      if (d[key] !== scored[key])
        return `${EVALUATED_FILES[key]} has sha256 ${d[key] ?? "(missing)"}, eval.json scored ${scored[key]}`;
    }
    return undefined;
  };
  // Judged: observe keeps an eval.json judged only when it names this round; its verdict recorded
  // the encoders it scored, which must still be the ones to promote.
  if ("judged" in ev) {
    const scored = r.verdict?.sha256;
    const promotionDue = r.verdict?.verdict.passed && r.promotedVersion === undefined && input.spec.promotion;
    return scored && promotionDue && r.digests ? compare(scored) : undefined;
  }
  if (ev.round !== r.index) return `eval.json names round ${ev.round}, not ${r.index}`;
  if (withSlash(ev.roundUri) !== uri) return `eval.json names ${ev.roundUri}, not ${uri}`;
  if (ev.status === "Failed") return undefined;
  if (withSlash(ev.candidate.uri) !== uri) return `eval.json scored ${ev.candidate.uri}, not ${uri}`;
  return compare(ev.candidate.sha256);
}

/**
 * An evaluation of a round. again: a fresh one after a refused eval.json, with its own Job name and
 * a Warning (recorded with the action: the pass ends when it is carried out).
 */
function evaluate(
  input: RoundsInput,
  r: RoundObservation,
  again?: { attempt: string; why: string },
): AfterTraining | undefined {
  const { spec } = input;
  // Evaluation waits for a complete discovery pass: it scores the slices known so far.
  if (input.slices === undefined) return undefined;
  const request = evaluationRequest(input, r);
  const warning = (what: string): PlannedEvent => ({
    type: "Warning",
    reason: "EvaluationMismatch",
    message: `round ${r.index}: ${again!.why}; ${what}`,
  });
  if (spec.evaluation.runner.mode === "InProcess" || !input.evaluatorImage) {
    const action: RoundAction = { kind: "EvaluateInProcess", round: r.index, request };
    if (again) action.event = warning("evaluating it again in-process");
    return { phase: "Evaluating", fields: {}, actions: [action] };
  }
  const job = buildEvalJob({ run: input.run, spec, image: input.evaluatorImage, request });
  // A re-evaluation gets a Job of its own: the first one is complete and its name taken until its TTL.
  if (again) job.metadata.name = `${job.metadata.name.slice(0, 63 - again.attempt.length - 1)}-${again.attempt}`;
  if (r.evalJob?.name === job.metadata.name) return { phase: "Evaluating", fields: {}, actions: [] };
  const event: PlannedEvent = again
    ? warning(`evaluating it again: created Job ${job.metadata.name}`)
    : { type: "Normal", reason: "EvaluationStarted", message: `round ${r.index}: created Job ${job.metadata.name}` };
  // The Job reads what to score from eval-request.json, written just before it is created.
  const create: RoundAction = { kind: "CreateJob", round: r.index, job, event, evalRequest: evalRequestFor(request) };
  return { phase: "Evaluating", fields: {}, actions: [create] };
}

/**
 * An evaluation Job that failed without a usable eval.json: the round is Rejected, and an eval.json
 * saying so is written (the Job goes after its TTL; without a record the round would be evaluated
 * again then).
 */
function evaluationJobFailed(input: RoundsInput, r: RoundObservation, replace: boolean): AfterTraining {
  const failure = r.evalJob!.failure!;
  const message = `${failure.reason}: ${failure.message}`;
  const result: EvalResult = {
    schemaVersion: EVAL_SCHEMA_VERSION,
    status: "Failed",
    round: r.index,
    roundUri: roundUri(input.spec.artifacts.s3, r.index),
    roundSlices: r.plan!.newSlices,
    evaluatedAt: input.now.toISOString(),
    reason: "EvaluationFailed",
    message: `Job ${r.evalJob!.name}: ${message}`,
  };
  const record: RoundAction = { kind: "RecordEvaluationFailure", round: r.index, result, replace };
  return { phase: "Rejected", reason: "EvaluationFailed", message, fields: {}, actions: [record] };
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
  const evaluating = evaluationStep(input, r);
  if (evaluating) return evaluating;
  const { verdict, fields, record, evaluatedAt } = judge(input, r as Evaluated);
  if (!verdict.passed)
    return { phase: "Rejected", reason: verdict.reason, message: verdict.message, fields, actions: [], record };
  return promotionStep(input, r, { verdict, fields, record, evaluatedAt }, latestPromoted, newestPassed);
}

/** A round not evaluated yet, or whose eval.json is not this round's: its evaluation; else undefined. */
function evaluationStep(input: RoundsInput, r: RoundObservation): AfterTraining | undefined {
  const { spec } = input;
  if (!r.evaluation) {
    if (r.evalJob?.failure) return evaluationJobFailed(input, r, false);
    if (r.evalJob && spec.evaluation.runner.mode !== "InProcess" && input.evaluatorImage)
      return { phase: "Evaluating", fields: {}, actions: [] };
    return evaluate(input, r) ?? { phase: "Evaluating", fields: {}, actions: [] };
  }
  const mismatch = evaluationMismatch(input, r);
  if (mismatch === "unknown") return { phase: "Evaluating", fields: {}, actions: [] };
  if (mismatch === undefined) return undefined;
  // Never a verdict, never a promotion: the round is evaluated again, in a Job of its own.
  const attempt = createHash("sha256").update(`${r.evaluation.evaluatedAt}\n${mismatch}`).digest("hex").slice(0, 6);
  const message = `${mismatch}; evaluating the round again`;
  const again = evaluate(input, r, { attempt, why: mismatch });
  const rerun =
    again?.actions.some((a) => a.kind === "CreateJob") || again?.actions.some((a) => a.kind === "EvaluateInProcess");
  if (!rerun && r.evalJob?.failure) return evaluationJobFailed(input, r, true);
  if (!rerun && r.evalJob?.complete)
    return {
      phase: "Rejected",
      reason: "EvaluationMismatch",
      message: `${mismatch}; the re-evaluation did not write a matching eval.json`,
      fields: {},
      actions: [],
    };
  return { phase: "Evaluating", reason: "EvaluationMismatch", message, fields: {}, actions: again?.actions ?? [] };
}

type Evaluated = RoundObservation & { evaluation: NonNullable<RoundObservation["evaluation"]> };
type Judged = {
  verdict: RoundVerdict;
  /** The eval.json judged (a promotion must find the same one). */
  evaluatedAt: string;
  fields: AfterTraining["fields"];
  /** verdict.json to write when this eval.json has none yet. */
  record: RoundAction | undefined;
};

/**
 * The round's verdict. Judged once: tightening a gate later does not reject the serving round,
 * loosening one does not promote old rejected rounds one after another. A new eval.json
 * (re-evaluation) is judged anew.
 */
function judge(input: RoundsInput, r: Evaluated): Judged {
  const { spec } = input;
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
          ...("judged" in ev
            ? {}
            : {
                round: ev.round,
                roundUri: ev.roundUri,
                ...(ev.status === "Succeeded" ? { sha256: ev.candidate.sha256 } : {}),
              }),
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
  return { verdict, fields, record, evaluatedAt: ev.evaluatedAt };
}

/** A round whose gates passed: promoted, passed over (and why), waiting for approval, or promoting. */
function promotionStep(
  input: RoundsInput,
  r: RoundObservation,
  { verdict, fields, record, evaluatedAt }: Judged & { verdict: Extract<RoundVerdict, { passed: true }> },
  latestPromoted: number,
  newestPassed: number,
): AfterTraining {
  const { spec } = input;
  const none: RoundAction[] = [];
  const passed = (reason: string, message: string): AfterTraining => ({
    phase: "Passed",
    reason,
    message,
    fields,
    actions: none,
    record,
  });
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
  if (!spec.promotion) return passed("NoPromotion", "gates passed; spec.promotion is not set");
  if (r.index < latestPromoted || r.index < newestPassed)
    return passed("Superseded", `gates passed, but a later round is already promoted or passed`);
  // A round that cannot be promoted (the trainer left no checkpoint.pt, say) is not promoted, and
  // does not hold back the rounds after it: it is Passed, with the reason.
  const missing = PROMOTED_FILES.filter((f) => f.required && !r.files.has(f.name)).map((f) => f.name);
  if (missing.length) {
    const where = roundUri(spec.artifacts.s3, r.index);
    return passed("NotPromotable", `gates passed, but ${where} lacks ${missing.join(", ")}: not promoted`);
  }
  if (spec.promotion.mode === "Manual" && !isRoundApproved(input.annotations, r.index)) {
    const message = `gates passed; approve with: kubectl annotate ccr ${input.run.name} ticclip.dev/approve-round=${r.index}`;
    return { phase: "Gating", reason: "AwaitingApproval", message, fields, actions: none, record };
  }
  const promote: RoundAction = {
    kind: "Promote",
    round: r.index,
    metrics: verdict.metrics,
    evaluatedAt,
  };
  return { phase: "Gating", reason: "Promoting", message: verdict.message, fields, actions: [promote], record };
}
