// Carries out a decision's actions in order. Returns false when the world changed under us and the
// run should be observed again before anything else is decided.
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

const withSlash = (uri: string) => (uri.endsWith("/") ? uri : uri + "/");

export async function act(ctx: ActContext, actions: Action[]): Promise<ActResult> {
  const { run, spec, mem, children, events, log } = ctx;
  const objects = mem.storage.objects;
  const store = new RoundStore(objects, spec.artifacts.s3);
  const record = (e: { type: "Normal" | "Warning"; reason: string; message: string }) =>
    events.record(run, e.type, e.reason, e.message);
  const carryOut = async (action: Action): Promise<ActResult | undefined> => {
    switch (action.kind) {
      case "WritePlan": {
        const written = await store.putJsonIfAbsent(action.round, ROUND_FILES.plan, action.plan);
        if (!written) {
          log.warn("plan already exists; re-observing", { round: action.round });
          return { complete: false };
        }
        mem.plannedSlices.set(action.round, action.plan.newSlices);
        log.info("plan written", { round: action.round, uri: store.uri(action.round, ROUND_FILES.plan) });
        break;
      }
      case "CreateJob": {
        let created: boolean;
        if (action.evalRequest) await store.putJson(action.round, ROUND_FILES.evalRequest, action.evalRequest);
        try {
          if (action.service) await children.createIfAbsent(action.service);
          created = await children.createIfAbsent(action.job);
        } catch (err) {
          if (!(err instanceof ObjectRejected)) throw err;
          const message = `round ${action.round}: ${err.message}`;
          log.warn("job refused", { round: action.round, error: message });
          await record({ type: "Warning", reason: "JobCreateFailed", message });
          return { complete: false, problem: { reason: "JobCreateFailed", message } };
        }
        if (created) {
          log.info("job created", { round: action.round, job: action.job.metadata.name });
          const seen = (mem.plannedSlices.get(action.round) ?? []).map((id) => mem.sliceSeenAt.get(id));
          if (
            action.job.metadata.labels?.[LABELS.component] === "trainer" &&
            seen.length &&
            !seen.includes(undefined)
          ) {
            sliceToJobSeconds.observe((Date.now() - Math.max(...(seen as number[]))) / 1000);
          }
          await record(action.event);
        }
        break;
      }
      case "EvaluateInProcess": {
        if (action.event) await record(action.event);
        const request = await buildEvaluateRequest(objects, evalRequestFor(action.request), ctx.now().toISOString());
        // Cancelled with leadership, terminated past its limits (evaluation/worker.ts).
        const result = await ctx.evaluate(objects, request, { signal: ctx.signal, limits: ctx.evaluationLimits });
        ctx.signal?.throwIfAborted();
        await writeEvalResult(objects, roundUri(spec.artifacts.s3, action.round), result);
        log.info("round evaluated in-process", { round: action.round, status: result.status });
        return { complete: false }; // re-observe: eval.json now decides the round
      }
      case "Promote": {
        const target = promotionTarget(spec.promotion!);
        const uri = roundUri(spec.artifacts.s3, action.round);
        // The eval.json judged must still be the one in the folder, naming this round: its digests
        // are what the copies are checked against.
        const judged = await store.readDocument(action.round, ROUND_FILES.eval).catch(() => undefined);
        const ev = judged && "value" in judged ? judged.value : undefined;
        if (
          ev?.status !== "Succeeded" ||
          ev.evaluatedAt !== action.evaluatedAt ||
          ev.round !== action.round ||
          withSlash(ev.roundUri) !== uri
        ) {
          const message = `round ${action.round}: ${uri}${ROUND_FILES.eval} is no longer the evaluation that was judged; not promoted`;
          log.warn("promotion refused", { round: action.round, error: message });
          await record({ type: "Warning", reason: "EvaluationMismatch", message });
          return { complete: false };
        }
        const outcome = await promoteRound(objects, {
          target,
          run: { namespace: run.metadata.namespace, name: run.metadata.name, uid: run.metadata.uid },
          round: action.round,
          roundUri: uri,
          metrics: action.metrics,
          now: ctx.now().toISOString(),
          moveAlias: spec.promotion?.pinVersion == null,
          expectSha256: {
            [EVALUATED_FILES.image]: ev.candidate.sha256.image,
            [EVALUATED_FILES.text]: ev.candidate.sha256.text,
          },
          signal: ctx.signal,
        });
        if (!outcome.ok) {
          const message = `round ${action.round}: ${outcome.message}`;
          await record({ type: "Warning", reason: outcome.reason, message });
          // The bytes evaluated are gone: the next observe reads the new digests and evaluates again.
          if (outcome.reason === "EvaluatedBytesChanged") return { complete: false };
          return { complete: false, problem: { reason: outcome.reason, message } };
        }
        if (outcome.copied || outcome.aliasWritten) {
          const message = `round ${action.round} promoted as v${outcome.version.version} (${outcome.pointerUri})`;
          await record({ type: "Normal", reason: "Promoted", message });
        }
        return { complete: false };
      }
      case "RecordVerdict": {
        if (action.replace)
          await objects.put(
            store.uri(action.round, ROUND_FILES.verdict),
            JSON.stringify(action.record, null, 2),
            "application/json",
          );
        else await store.putJsonIfAbsent(action.round, ROUND_FILES.verdict, action.record);
        break;
      }
      case "RecordEvaluationFailure": {
        const body = JSON.stringify(action.result, null, 2);
        if (action.replace) await objects.put(store.uri(action.round, ROUND_FILES.eval), body, "application/json");
        else await store.putJsonIfAbsent(action.round, ROUND_FILES.eval, action.result);
        return { complete: false }; // re-observe: eval.json now decides the round
      }
      case "RecordCompute": {
        await store.putJsonIfAbsent(action.round, ROUND_FILES.compute, action.record);
        break;
      }
      case "RecordFailure": {
        if (await store.putJsonIfAbsent(action.round, ROUND_FILES.failure, action.record)) {
          await record(action.event);
          if (action.sliceFailed) await record(action.sliceFailed);
        }
        break;
      }
      case "PointAlias": {
        const target = promotionTarget(spec.promotion!);
        const now = ctx.now().toISOString();
        const out = await pointAliasAt(objects, target, action.version, action.pinned, now, ctx.signal);
        if (!out.ok) {
          const message = `spec.promotion: alias ${target.alias}: ${out.message}`;
          await record({ type: "Warning", reason: out.reason, message });
          return { complete: false, problem: { reason: out.reason, message } };
        }
        if (out.aliasWritten) await record(action.event);
        return { complete: false }; // re-observe: the ConfigMap follows the pointer as written
      }
      case "ApplyConfigMap": {
        const result = await children.applyConfigMap(action.configMap);
        // Someone else created it meanwhile: shown as the run's condition, then backed off.
        if (result === "notOwned")
          return { complete: false, problem: configMapNotOwned(action.configMap.metadata.name) };
        if (result !== "unchanged") {
          log.info("model ConfigMap " + result, {
            configMap: action.configMap.metadata.name,
            version: action.configMap.data.version,
          });
        }
        break;
      }
      case "EvictTrainer": {
        const pods = await children.evictJobPods(run.metadata.namespace, action.job);
        log.warn("stalled trainer evicted", { round: action.round, job: action.job, pods });
        await record(action.event);
        break;
      }
      case "SyncGit": {
        const target = spec.promotion?.git;
        if (!target || !ctx.git) break;
        await syncGit({ ...ctx, target, git: ctx.git }, action);
        return { complete: false }; // re-observe: status shows the outcome (GitSynced)
      }
    }
    return undefined;
  };
  for (const action of actions) {
    ctx.signal?.throwIfAborted();
    let result: ActResult | undefined;
    try {
      result = await carryOut(action);
    } catch (err) {
      // Leadership lost: write nothing more, not even status (the new leader redoes what is left).
      if (ctx.signal?.aborted) throw err;
      // Every failure ends in status (a condition naming the field, an Event on the change), the way
      // Flux's summarize-and-patch does, and is retried with backoff: never a silent retry loop.
      const problem = actionProblem(action, err);
      log.warn("action failed", { action: action.kind, error: problem.message });
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
  const what: Record<Action["kind"], [reason: string, field: string, doing: string]> = {
    WritePlan: ["PlanNotWritten", "spec.artifacts.s3", "writing plan.json"],
    CreateJob: ["JobCreateFailed", "spec.trainer", "creating its Job"],
    RecordCompute: ["RecordNotWritten", "spec.artifacts.s3", "writing compute.json"],
    RecordVerdict: ["RecordNotWritten", "spec.artifacts.s3", "writing verdict.json"],
    RecordFailure: ["RecordNotWritten", "spec.artifacts.s3", "writing failed.json"],
    RecordEvaluationFailure: ["RecordNotWritten", "spec.artifacts.s3", "writing eval.json"],
    EvaluateInProcess: ["EvaluationFailed", "spec.evaluation", "evaluating in-process"],
    Promote: ["PromotionFailed", "spec.promotion.s3", "promoting"],
    PointAlias: ["AliasNotWritten", "spec.promotion.s3", "writing the alias"],
    ApplyConfigMap: ["ConfigMapNotApplied", "spec.promotion.configMapName", "applying the model ConfigMap"],
    SyncGit: ["GitSyncFailed", "spec.promotion.git", "syncing Git"],
    EvictTrainer: ["TrainerEvictionFailed", "spec.trainer.restartOnStall", "evicting its stalled trainer pods"],
  };
  const [reason, field, doing] = what[action.kind];
  return { reason, message: `${field}: ${round}${doing} failed: ${why}` };
}
