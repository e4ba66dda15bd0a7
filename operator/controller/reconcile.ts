// One reconcile of one run: observe -> decide (pure) -> act. The only place errors become outcomes.
// Per-run memory (slice discovery, immutable round documents) is a cache of the world: losing it
// on restart costs one full S3 listing, never a duplicate Job or a skipped slice.
import { createHash } from "node:crypto";
import type { S3Client } from "@aws-sdk/client-s3";
import { continualClipRunSpec, type ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import { roundPlan, type RoundPlan } from "../api/round-plan.ts";
import { SliceDiscovery, parseDuration, type DiscoveryResult } from "../data/discovery.ts";
import type { ChildClient } from "../kube/children.ts";
import type { EventRecorder, RawObject, RunClient } from "../kube/client.ts";
import type { Logger } from "../observability/log.ts";
import { errorMessage } from "../observability/log.ts";
import { createS3Client } from "../s3/client.ts";
import { connectionFromSecret } from "../s3/credentials.ts";
import { classifyS3Error } from "../s3/errors.ts";
import { ROUND_FILES, RoundStore, roundPrefix } from "../s3/round-store.ts";
import { S3SliceStore } from "../s3/slice-store.ts";
import { decide, type Observed } from "./decide.ts";
import { API_VERSION, KIND } from "../api/continual-clip-run.ts";
import { EVAL_JSON, evalResult, type EvalResult } from "../api/eval-result.ts";
import { evaluateRound, writeEvalResult } from "../evaluation/evaluate.ts";
import { buildEvaluateRequest, requestInputs, roundUri } from "../evaluation/request.ts";
import { buildModelConfigMap } from "../promotion/configmap.ts";
import { aliasUri, listVersions, pinAlias, promoteRound, promotedStatus, readAlias, unpinAlias } from "../promotion/versions.ts";
import { S3ObjectStore } from "../s3/object-store.ts";
import { observeRunStatus, observeSlicePoll, sliceToJobSeconds } from "../observability/metrics.ts";
import { LABELS } from "../training/job.ts";
import type { Outcome } from "./queue.ts";
import type { FailureRecord, RoundAction, RoundObservation } from "./rounds.ts";

export type ReconcilerDeps = {
  runs: RunClient;
  children: ChildClient;
  events: EventRecorder;
  log: Logger;
  now?: () => Date;
  /** How often to look at a running round even without a Job event. */
  activeRoundResyncMs?: number;
  /** Image of evaluation Jobs; unset evaluates in the operator process. */
  evaluatorImage?: string | undefined;
};

type RunMemory = {
  connectionKey: string;
  s3: S3Client;
  sourceKey: string;
  discovery: SliceDiscovery;
  lastDiscovery?: DiscoveryResult | undefined;
  nextPollAt: number;
  plans: Map<number, RoundPlan>;
  failures: Map<number, FailureRecord>;
  evaluations: Map<number, EvalResult>;
  /** When discovery first saw each slice valid (ms), for the slice-to-Job latency metric. */
  sliceSeenAt: Map<string, number>;
};

export function splitKey(key: string): { namespace: string; name: string } {
  const [namespace, name] = key.split("/");
  if (!namespace || !name) throw new Error(`bad key ${key}`);
  return { namespace, name };
}

const hash = (v: unknown) => createHash("sha256").update(JSON.stringify(v)).digest("hex");

export class Reconciler {
  readonly #deps: ReconcilerDeps;
  readonly #now: () => Date;
  readonly #memory = new Map<string, RunMemory>();

  constructor(deps: ReconcilerDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? (() => new Date());
  }

  forget(key: string): void {
    this.#memory.delete(key);
  }

  /**
   * An S3 event arrived for bucket/key: returns the run keys whose source it belongs to, after
   * marking the slice for a re-check, so the caller can enqueue them at once.
   */
  notify(bucket: string, objectKey: string): string[] {
    const hits: string[] = [];
    for (const [runKey, mem] of this.#memory) {
      if (!mem.sourceKey.startsWith(`${bucket}\n`)) continue;
      if (mem.discovery.notify(objectKey)) {
        mem.nextPollAt = 0;
        hits.push(runKey);
      }
    }
    return hits;
  }

  reconcile = async (key: string): Promise<Outcome> => {
    const { namespace, name } = splitKey(key);
    const log = this.#deps.log.child({ namespace, name });
    try {
      const run = await this.#deps.runs.get(namespace, name);
      if (!run || run.metadata.deletionTimestamp) {
        this.forget(key); // owned Jobs go by garbage collection; S3 artifacts stay
        return { kind: "done" };
      }
      const parsed = continualClipRunSpec.safeParse(run.spec);
      const observed: Observed = parsed.success ? await this.#observe(key, run, parsed.data, log) : { rounds: [] };
      const decision = decide(run, observed, this.#now());
      if (decision.actions.length && decision.spec) {
        const complete = await this.#act(key, run, decision.spec, decision.actions, log);
        if (!complete) return { kind: "requeueAfter", ms: 0 };
      }
      if (decision.spec && !decision.status?.conditions?.some((c) => c.type === "Degraded" && c.status === "True")) {
        await this.#syncAlias(key, run, decision.spec, log);
      }
      if (decision.status) {
        const ok = await this.#deps.runs.patchStatus(namespace, name, decision.status);
        if (!ok) return { kind: "done" };
        log.info("status updated", { generation: run.metadata.generation, phase: decision.status.phase, round: decision.status.currentRound?.index });
      }
      for (const e of decision.events) {
        log.info("event", e);
        await this.#deps.events.record(run, e.type, e.reason, e.message);
      }
      observeRunStatus(namespace, name, decision.status ?? (run.status as Parameters<typeof observeRunStatus>[2]));
      if (decision.outcome === "stalled") return { kind: "stalled" };
      const mem = this.#memory.get(key);
      const untilPoll = mem ? Math.max(0, mem.nextPollAt - Date.now()) : 60_000;
      const active = decision.status?.currentRound ?? (run.status as { currentRound?: unknown } | undefined)?.currentRound;
      const wait = active ? Math.min(untilPoll, this.#deps.activeRoundResyncMs ?? 30_000) : untilPoll;
      return { kind: "requeueAfter", ms: wait };
    } catch (error) {
      log.warn("reconcile failed", { error: errorMessage(error) });
      return { kind: "retry", error };
    }
  };

  async #observe(key: string, run: RawObject, spec: ContinualClipRunSpec, log: Logger): Promise<Observed> {
    const { namespace } = run.metadata;
    const src = spec.source.s3;
    const secret = src.credentialsSecretRef ? await this.#deps.children.secretData(namespace, src.credentialsSecretRef.name) : undefined;
    const conn = connectionFromSecret(src, secret);
    // Jobs first, then S3: a Job seen complete has already written its _SUCCESS marker.
    const { trainer: jobs, evaluator: evalJobs } = await this.#deps.children.roundJobs(namespace, run.metadata.name);
    if (!conn.ok) return { problem: { reason: conn.reason, message: conn.message }, rounds: [] };

    const mem = this.#memoryFor(key, spec, conn.connection);
    const now = Date.now();
    if (now >= mem.nextPollAt) {
      const result = await mem.discovery.poll();
      mem.lastDiscovery = result;
      mem.nextPollAt = Date.now() + result.nextPollMs;
      if (result.newSlices.length) log.info("new slices", { slices: result.newSlices });
      for (const id of result.newSlices) mem.sliceSeenAt.set(id, now);
      if (result.errors.length === 0) observeSlicePoll(namespace, run.metadata.name, new Date(), parseDuration(spec.source.pollInterval));
    }

    const store = new RoundStore(mem.s3, spec.artifacts.s3.bucket, spec.artifacts.s3.prefix);
    let listing;
    try {
      listing = await store.listRounds();
    } catch (err) {
      const p = classifyS3Error(err);
      return { problem: { reason: p.reason, message: `artifacts s3://${store.bucket}/${store.prefix}: ${p.message}` }, discovery: mem.lastDiscovery, rounds: [] };
    }
    const rounds: RoundObservation[] = [];
    for (const [index, files] of listing) {
      if (!files.has(ROUND_FILES.plan)) continue;
      const base = roundPrefix(spec.artifacts.s3.prefix, index);
      let plan = mem.plans.get(index);
      if (!plan) {
        const parsed = roundPlan.safeParse(await store.getJson(`${base}${ROUND_FILES.plan}`));
        if (!parsed.success) {
          log.warn("unreadable plan; round ignored", { round: index });
          continue;
        }
        plan = parsed.data;
        mem.plans.set(index, plan);
      }
      let failure = mem.failures.get(index);
      if (!failure && files.has(ROUND_FILES.failure)) {
        failure = (await store.getJson(`${base}${ROUND_FILES.failure}`)) as FailureRecord | undefined;
        if (failure) mem.failures.set(index, failure);
      }
      let evaluation = mem.evaluations.get(index);
      if (!evaluation && files.has(EVAL_JSON)) {
        const parsed = evalResult.safeParse(await store.getJson(`${base}${EVAL_JSON}`));
        if (parsed.success) mem.evaluations.set(index, (evaluation = parsed.data));
        else log.warn("unreadable eval.json; round will be re-evaluated", { round: index });
      }
      rounds.push({ index, files, plan, failure, job: jobs.get(index), evaluation, evalJob: evalJobs.get(index) });
    }
    // Promotion state: which rounds became versions, and where the alias points.
    let promoted: Observed["promoted"];
    let promotedCheckpoint: string | undefined;
    if (spec.promotion) {
      const objects = new S3ObjectStore(mem.s3);
      const target = promotionTarget(spec);
      const { complete } = await listVersions(objects, target);
      for (const v of complete) {
        if (v.run.uid !== run.metadata.uid) continue;
        const r = rounds.find((x) => x.index === v.round);
        if (r) r.promotedVersion = v.version;
      }
      const pointer = await readAlias(objects, target);
      if (pointer && !("invalid" in pointer)) {
        promoted = promotedStatus(pointer);
        promotedCheckpoint = pointer.uris.checkpoint;
      }
    }
    // Discovery warns about manifests that change after a round consumed them.
    mem.discovery.markConsumed(rounds.filter((r) => !r.failure && !r.job?.failure).flatMap((r) => r.plan!.newSlices));
    return { discovery: mem.lastDiscovery, rounds, promoted, promotedCheckpoint, evaluatorImage: this.#deps.evaluatorImage };
  }

  #memoryFor(key: string, spec: ContinualClipRunSpec, connection: Parameters<typeof createS3Client>[0]): RunMemory {
    const src = spec.source;
    const sourceKey = `${src.s3.bucket}\n${src.s3.prefix}\n${src.startAfter ?? ""}\n${src.pollInterval}`;
    const connectionKey = hash(connection);
    let mem = this.#memory.get(key);
    if (!mem || mem.sourceKey !== sourceKey || mem.connectionKey !== connectionKey) {
      const s3 = createS3Client(connection);
      mem = {
        connectionKey,
        s3,
        sourceKey,
        discovery: new SliceDiscovery({
          store: new S3SliceStore(s3, src.s3.bucket),
          prefix: src.s3.prefix,
          startAfter: src.startAfter,
          pollIntervalMs: parseDuration(src.pollInterval),
        }),
        nextPollAt: 0,
        plans: mem?.plans ?? new Map(),
        failures: mem?.failures ?? new Map(),
        evaluations: mem?.evaluations ?? new Map(),
        sliceSeenAt: new Map(),
      };
      this.#memory.set(key, mem);
    }
    return mem;
  }

  /** Carries out the actions in order. Returns false when the world changed under us (re-observe). */
  async #act(key: string, run: RawObject, spec: ContinualClipRunSpec, actions: RoundAction[], log: Logger): Promise<boolean> {
    const mem = this.#memory.get(key);
    if (!mem) return false;
    const store = new RoundStore(mem.s3, spec.artifacts.s3.bucket, spec.artifacts.s3.prefix);
    for (const action of actions) {
      switch (action.kind) {
        case "WritePlan": {
          const written = await store.putJsonIfAbsent(action.key, action.plan);
          if (!written) {
            log.warn("plan already exists; re-observing", { round: action.round });
            return false;
          }
          mem.plans.set(action.round, action.plan);
          log.info("plan written", { round: action.round, uri: store.uri(action.key) });
          break;
        }
        case "CreateJob": {
          if (action.service) await this.#deps.children.createIfAbsent(action.service);
          const created = await this.#deps.children.createIfAbsent(action.job);
          if (created) {
            log.info("job created", { round: action.round, job: action.job.metadata.name });
            const seen = (mem.plans.get(action.round)?.newSlices ?? []).map((id) => mem.sliceSeenAt.get(id));
            if (action.job.metadata.labels?.[LABELS.component] === "trainer" && seen.length && !seen.includes(undefined)) {
              sliceToJobSeconds.observe((Date.now() - Math.max(...(seen as number[]))) / 1000);
            }
            await this.#deps.events.record(run, action.event.type, action.event.reason, action.event.message);
          }
          break;
        }
        case "EvaluateInProcess": {
          const objects = new S3ObjectStore(mem.s3);
          const promoted = (run.status as { promoted?: { version: number; uri: string } } | undefined)?.promoted;
          const request = await buildEvaluateRequest(
            objects,
            requestInputs({ spec, round: action.round, roundSlices: action.roundSlices, slices: mem.discovery.slices().map((x) => x.id), promoted }),
            new Date().toISOString(),
            { executionProvider: spec.evaluation.runner.executionProvider, batchSize: spec.evaluation.runner.batchSize },
          );
          const result = await evaluateRound(objects, request);
          await writeEvalResult(objects, roundUri(spec, action.round), result);
          log.info("round evaluated in-process", { round: action.round, status: result.status });
          return false; // re-observe: eval.json now decides the round
        }
        case "Promote": {
          const objects = new S3ObjectStore(mem.s3);
          const outcome = await promoteRound(objects, {
            target: promotionTarget(spec),
            run: { namespace: run.metadata.namespace, name: run.metadata.name, uid: run.metadata.uid },
            round: action.round,
            roundUri: roundUri(spec, action.round),
            metrics: action.metrics,
            now: new Date().toISOString(),
            moveAlias: spec.promotion?.pinVersion == null,
          });
          if (!outcome.ok) {
            await this.#deps.events.record(run, "Warning", outcome.reason, `round ${action.round}: ${outcome.message}`);
            throw new Error(`promotion of round ${action.round}: ${outcome.reason}: ${outcome.message}`);
          }
          if (outcome.copied || outcome.aliasWritten) {
            await this.#deps.events.record(run, "Normal", "Promoted", `round ${action.round} promoted as v${outcome.version.version} (${outcome.pointerUri})`);
          }
          return false;
        }
        case "RecordFailure": {
          if (await store.putJsonIfAbsent(action.key, action.record)) {
            mem.failures.set(action.round, action.record);
            await this.#deps.events.record(run, action.event.type, action.event.reason, action.event.message);
          }
          break;
        }
      }
    }
    return true;
  }

  /** Rollback by spec.promotion.pinVersion, and the model ConfigMap following the alias. */
  async #syncAlias(key: string, run: RawObject, spec: ContinualClipRunSpec, log: Logger): Promise<void> {
    const mem = this.#memory.get(key);
    if (!spec.promotion || !mem) return;
    const objects = new S3ObjectStore(mem.s3);
    const target = promotionTarget(spec);
    const now = new Date().toISOString();
    let pointer = await readAlias(objects, target);
    if (pointer && "invalid" in pointer) return;
    const pin = spec.promotion.pinVersion ?? undefined;
    if (pin !== undefined && (!pointer || pointer.version !== pin || !pointer.pinned)) {
      const out = await pinAlias(objects, target, pin, now);
      if (!out.ok) throw new Error(`${out.reason}: ${out.message}`);
      await this.#deps.events.record(run, "Normal", "RolledBack", `alias ${target.alias} pinned to v${pin}`);
      pointer = out.pointer;
    } else if (pin === undefined && pointer?.pinned) {
      const out = await unpinAlias(objects, target, now);
      if (out?.ok) pointer = out.pointer;
    }
    if (pointer && spec.promotion.configMapName) {
      const owner = { apiVersion: API_VERSION, kind: KIND, name: run.metadata.name, namespace: run.metadata.namespace, uid: run.metadata.uid };
      const result = await this.#deps.children.applyConfigMap(buildModelConfigMap(spec.promotion.configMapName, owner, pointer, aliasUri(target)));
      if (result !== "unchanged") log.info("model ConfigMap " + result, { configMap: spec.promotion.configMapName, version: pointer.version });
    }
  }
}

function promotionTarget(spec: ContinualClipRunSpec) {
  const p = spec.promotion!;
  return { bucket: p.s3.bucket, prefix: p.s3.prefix, alias: p.alias };
}
