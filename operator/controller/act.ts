// Carries out a decision's actions in order. Returns false when the world changed under us and the
// run should be observed again before anything else is decided.
import { withSlash } from "../api/common.ts";
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import { ROUND_FILES, roundUri } from "../api/round-layout.ts";
import { writeEvalResult } from "../evaluation/evaluate.ts";
import { buildEvaluateRequest, evalRequestFor } from "../evaluation/request.ts";
import type { WorkerLimits } from "../evaluation/worker.ts";
import type { RawObject } from "../kube/client.ts";
import { LABELS } from "../kube/objects.ts";
import type { Logger } from "../observability/log.ts";
import { sliceToJobSeconds } from "../observability/metrics.ts";
import { EVALUATED_FILES, pointAliasAt, promoteRound, promotionTarget } from "../promotion/versions.ts";
import { RoundStore } from "../s3/round-store.ts";
import type { RunMemory } from "./memory.ts";
import { syncGit } from "./git-sync.ts";
import type { ChildAccess, Evaluate, EventSink, GitAccess } from "./ports.ts";
import type { Action, Problem } from "./types.ts";
import { ObjectRejected } from "../kube/errors.ts";
import { errorMessage } from "../observability/log.ts";
import { S3Failure } from "../s3/errors.ts";
import { configMapNotOwned } from "./alias.ts";

export type ActContext = {
  run: RawObject;
  spec: ContinualClipRunSpec;
  mem: RunMemory;
  children: ChildAccess;
  events: EventSink;
  evaluate: Evaluate;
  /** spec.promotion.git's repositories (SyncGit). */
  git?: GitAccess | undefined;
  log: Logger;
  now: () => Date;
  /** Aborted when leadership is lost: no further writes. */
  signal?: AbortSignal | undefined;
  /** What an in-process evaluation may use of this process (evaluation/worker.ts). */
  evaluationLimits?: Partial<WorkerLimits> | undefined;
};

/**
 * complete false: re-observe before deciding anything else. problem: an action the world refused
 * (an object the API server will not create); the run shows it until it is fixed.
 */
export type ActResult = { complete: boolean; problem?: Problem | undefined };

/** What each action's step works with: the context plus the round store and the event recorder. */
type Step = ActContext & {
  store: RoundStore;
  objects: RunMemory["storage"]["objects"];
  record: (e: { type: "Normal" | "Warning"; reason: string; message: string }) => Promise<void>;
};
type ActionOf<K extends Action["kind"]> = Extract<Action, { kind: K }>;
/** One step: undefined goes on to the next action; a result stops the list there. */
type Carry<K extends Action["kind"]> = (s: Step, action: ActionOf<K>) => Promise<ActResult | undefined>;

async function writePlan(s: Step, action: ActionOf<"WritePlan">): Promise<ActResult | undefined> {
  const written = await s.store.putJsonIfAbsent(action.round, ROUND_FILES.plan, action.plan);
  if (!written) {
    s.log.warn("plan already exists; re-observing", { round: action.round });
    return { complete: false };
  }
  s.mem.plannedSlices.set(action.round, action.plan.newSlices);
  s.log.info("plan written", { round: action.round, uri: s.store.uri(action.round, ROUND_FILES.plan) });
  return undefined;
}

async function createJob(s: Step, action: ActionOf<"CreateJob">): Promise<ActResult | undefined> {
  const { mem, log } = s;
  let created: boolean;
  if (action.evalRequest) await s.store.putJson(action.round, ROUND_FILES.evalRequest, action.evalRequest);
  try {
    if (action.service) await s.children.createIfAbsent(action.service);
    created = await s.children.createIfAbsent(action.job);
  } catch (err) {
    if (!(err instanceof ObjectRejected)) throw err;
    const message = `round ${action.round}: ${err.message}`;
    log.warn("job refused", { round: action.round, error: message });
    await s.record({ type: "Warning", reason: "JobCreateFailed", message });
    return { complete: false, problem: { reason: "JobCreateFailed", message } };
  }
  if (created) {
    log.info("job created", { round: action.round, job: action.job.metadata.name });
    const seen = (mem.plannedSlices.get(action.round) ?? []).map((id) => mem.sliceSeenAt.get(id));
    if (action.job.metadata.labels?.[LABELS.component] === "trainer" && seen.length && !seen.includes(undefined)) {
      sliceToJobSeconds.observe((Date.now() - Math.max(...(seen as number[]))) / 1000);
    }
    await s.record(action.event);
  }
  return undefined;
}

async function evaluateInProcess(s: Step, action: ActionOf<"EvaluateInProcess">): Promise<ActResult> {
  if (action.event) await s.record(action.event);
  const request = await buildEvaluateRequest(s.objects, evalRequestFor(action.request), s.now().toISOString());
  // Cancelled with leadership, terminated past its limits (evaluation/worker.ts).
  const result = await s.evaluate(s.objects, request, { signal: s.signal, limits: s.evaluationLimits });
  s.signal?.throwIfAborted();
  await writeEvalResult(s.objects, roundUri(s.spec.artifacts.s3, action.round), result);
  s.log.info("round evaluated in-process", { round: action.round, status: result.status });
  return { complete: false }; // re-observe: eval.json now decides the round
}

async function promote(s: Step, action: ActionOf<"Promote">): Promise<ActResult> {
  const { run, spec, log } = s;
  const target = promotionTarget(spec.promotion!);
  const uri = roundUri(spec.artifacts.s3, action.round);
  // The eval.json judged must still be the one in the folder, naming this round: its digests
  // are what the copies are checked against.
  const judged = await s.store.readDocument(action.round, ROUND_FILES.eval).catch(() => undefined);
  const ev = judged && "value" in judged ? judged.value : undefined;
  if (
    ev?.status !== "Succeeded" ||
    ev.evaluatedAt !== action.evaluatedAt ||
    ev.round !== action.round ||
    withSlash(ev.roundUri) !== uri
  ) {
    const message = `round ${action.round}: ${uri}${ROUND_FILES.eval} is no longer the evaluation that was judged; not promoted`;
    log.warn("promotion refused", { round: action.round, error: message });
    await s.record({ type: "Warning", reason: "EvaluationMismatch", message });
    return { complete: false };
  }
  const outcome = await promoteRound(s.objects, {
    target,
    run: { namespace: run.metadata.namespace, name: run.metadata.name, uid: run.metadata.uid },
    round: action.round,
    roundUri: uri,
    metrics: action.metrics,
    now: s.now().toISOString(),
    moveAlias: spec.promotion?.pinVersion == null,
    expectSha256: {
      [EVALUATED_FILES.image]: ev.candidate.sha256.image,
      [EVALUATED_FILES.text]: ev.candidate.sha256.text,
    },
    signal: s.signal,
  });
  if (!outcome.ok) {
    const message = `round ${action.round}: ${outcome.message}`;
    await s.record({ type: "Warning", reason: outcome.reason, message });
    // The bytes evaluated are gone: the next observe reads the new digests and evaluates again.
    if (outcome.reason === "EvaluatedBytesChanged") return { complete: false };
    return { complete: false, problem: { reason: outcome.reason, message } };
  }
  if (outcome.copied || outcome.aliasWritten) {
    const message = `round ${action.round} promoted as v${outcome.version.version} (${outcome.pointerUri})`;
    await s.record({ type: "Normal", reason: "Promoted", message });
  }
  return { complete: false };
}

async function recordVerdict(s: Step, action: ActionOf<"RecordVerdict">): Promise<undefined> {
  if (action.replace) {
    const body = JSON.stringify(action.record, null, 2);
    await s.objects.put(s.store.uri(action.round, ROUND_FILES.verdict), body, "application/json");
  } else await s.store.putJsonIfAbsent(action.round, ROUND_FILES.verdict, action.record);
  return undefined;
}

async function recordEvaluationFailure(s: Step, action: ActionOf<"RecordEvaluationFailure">): Promise<ActResult> {
  const body = JSON.stringify(action.result, null, 2);
  if (action.replace) await s.objects.put(s.store.uri(action.round, ROUND_FILES.eval), body, "application/json");
  else await s.store.putJsonIfAbsent(action.round, ROUND_FILES.eval, action.result);
  return { complete: false }; // re-observe: eval.json now decides the round
}

async function recordCompute(s: Step, action: ActionOf<"RecordCompute">): Promise<undefined> {
  await s.store.putJsonIfAbsent(action.round, ROUND_FILES.compute, action.record);
  return undefined;
}

async function recordFailure(s: Step, action: ActionOf<"RecordFailure">): Promise<undefined> {
  if (await s.store.putJsonIfAbsent(action.round, ROUND_FILES.failure, action.record)) {
    await s.record(action.event);
    if (action.sliceFailed) await s.record(action.sliceFailed);
  }
  return undefined;
}

async function pointAlias(s: Step, action: ActionOf<"PointAlias">): Promise<ActResult> {
  const target = promotionTarget(s.spec.promotion!);
  const out = await pointAliasAt(s.objects, target, action.version, action.pinned, s.now().toISOString(), s.signal);
  if (!out.ok) {
    const message = `spec.promotion: alias ${target.alias}: ${out.message}`;
    await s.record({ type: "Warning", reason: out.reason, message });
    return { complete: false, problem: { reason: out.reason, message } };
  }
  if (out.aliasWritten) await s.record(action.event);
  return { complete: false }; // re-observe: the ConfigMap follows the pointer as written
}

async function applyConfigMap(s: Step, action: ActionOf<"ApplyConfigMap">): Promise<ActResult | undefined> {
  const result = await s.children.applyConfigMap(action.configMap);
  // Someone else created it meanwhile: shown as the run's condition, then backed off.
  if (result === "notOwned") return { complete: false, problem: configMapNotOwned(action.configMap.metadata.name) };
  if (result !== "unchanged") {
    s.log.info("model ConfigMap " + result, {
      configMap: action.configMap.metadata.name,
      version: action.configMap.data.version,
    });
  }
  return undefined;
}

async function syncGitAction(s: Step, action: ActionOf<"SyncGit">): Promise<ActResult | undefined> {
  const target = s.spec.promotion?.git;
  if (!target || !s.git) return undefined;
  await syncGit({ ...s, target, git: s.git }, action);
  return { complete: false }; // re-observe: status shows the outcome (GitSynced)
}

/**
 * Each action kind: the step that carries it out, and how its failure shows in status (reason,
 * the field whose storage or object failed, what was being done). JobSet's actionFunctionMap.
 */
async function evictTrainer(s: Step, action: ActionOf<"EvictTrainer">): Promise<ActResult | undefined> {
  const pods = await s.children.evictJobPods(s.run.metadata.namespace, action.job);
  s.log.warn("stalled trainer evicted", { round: action.round, job: action.job, pods });
  await s.record(action.event);
  return undefined;
}

const ACTIONS: { [K in Action["kind"]]: { carry: Carry<K>; failure: [reason: string, field: string, doing: string] } } =
  {
    WritePlan: { carry: writePlan, failure: ["PlanNotWritten", "spec.artifacts.s3", "writing plan.json"] },
    CreateJob: { carry: createJob, failure: ["JobCreateFailed", "spec.trainer", "creating its Job"] },
    RecordCompute: { carry: recordCompute, failure: ["RecordNotWritten", "spec.artifacts.s3", "writing compute.json"] },
    RecordVerdict: { carry: recordVerdict, failure: ["RecordNotWritten", "spec.artifacts.s3", "writing verdict.json"] },
    RecordFailure: { carry: recordFailure, failure: ["RecordNotWritten", "spec.artifacts.s3", "writing failed.json"] },
    RecordEvaluationFailure: {
      carry: recordEvaluationFailure,
      failure: ["RecordNotWritten", "spec.artifacts.s3", "writing eval.json"],
    },
    EvaluateInProcess: {
      carry: evaluateInProcess,
      failure: ["EvaluationFailed", "spec.evaluation", "evaluating in-process"],
    },
    Promote: { carry: promote, failure: ["PromotionFailed", "spec.promotion.s3", "promoting"] },
    PointAlias: { carry: pointAlias, failure: ["AliasNotWritten", "spec.promotion.s3", "writing the alias"] },
    ApplyConfigMap: {
      carry: applyConfigMap,
      failure: ["ConfigMapNotApplied", "spec.promotion.configMapName", "applying the model ConfigMap"],
    },
    SyncGit: { carry: syncGitAction, failure: ["GitSyncFailed", "spec.promotion.git", "syncing Git"] },
    EvictTrainer: {
      carry: evictTrainer,
      failure: ["TrainerEvictionFailed", "spec.trainer.restartOnStall", "evicting its stalled trainer pods"],
    },
  };

export async function act(ctx: ActContext, actions: Action[]): Promise<ActResult> {
  const objects = ctx.mem.storage.objects;
  const step: Step = {
    ...ctx,
    objects,
    store: new RoundStore(objects, ctx.spec.artifacts.s3),
    record: (e) => ctx.events.record(ctx.run, e.type, e.reason, e.message),
  };
  for (const action of actions) {
    ctx.signal?.throwIfAborted();
    let result: ActResult | undefined;
    try {
      // The map pairs each kind with its step; TypeScript cannot correlate the two through the index.
      const carry = ACTIONS[action.kind].carry as (s: Step, a: Action) => Promise<ActResult | undefined>;
      result = await carry(step, action);
    } catch (err) {
      // Leadership lost: write nothing more, not even status (the new leader redoes what is left).
      if (ctx.signal?.aborted) throw err;
      // Every failure ends in status (a condition naming the field, an Event on the change), the way
      // Flux's summarize-and-patch does, and is retried with backoff: never a silent retry loop.
      const problem = actionProblem(action, err);
      ctx.log.warn("action failed", { action: action.kind, error: problem.message });
      return { complete: false, problem };
    }
    if (result) return result;
  }
  return { complete: true };
}

/** An action that failed, as the condition shows it: which field's storage or object, and why. */
export function actionProblem(action: Action, err: unknown): Problem {
  const s3 = err instanceof S3Failure ? err.problem : undefined;
  const why = s3 ? `${s3.reason}: ${s3.message}` : errorMessage(err);
  const round = "round" in action ? `round ${action.round}: ` : "";
  const [reason, field, doing] = ACTIONS[action.kind].failure;
  return { reason, message: `${field}: ${round}${doing} failed: ${why}` };
}
