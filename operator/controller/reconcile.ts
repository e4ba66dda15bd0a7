// One reconcile of one run: observe -> decide (pure) -> act. The only place errors become outcomes.
// Everything outside this process comes in through the small interfaces of ports.ts, so the
// Reconciler runs against fakes in unit tests and against the real cluster and S3 alike.
import { continualClipRunSpec, type ContinualClipRunStatus } from "../api/continual-clip-run.ts";
import { evaluateRound } from "../evaluation/evaluate.ts";
import type { RawObject } from "../kube/client.ts";
import type { Logger } from "../observability/log.ts";
import { errorMessage } from "../observability/log.ts";
import { observeRunStatus } from "../observability/metrics.ts";
import { s3ClientPool } from "../s3/client.ts";
import { S3ObjectStore } from "../s3/object-store.ts";
import { S3SliceStore } from "../s3/slice-store.ts";
import { act } from "./act.ts";
import { findCondition, setCondition } from "./conditions.ts";
import { decide, type Decision } from "./decide.ts";
import { saveDocumentCache } from "./document-cache.ts";
import type { RunMemory } from "./memory.ts";
import { observeRun, type ObserveDeps } from "./observe.ts";
import { GitRepositories } from "../git/repository.ts";
import { gitRequestsTotal } from "../observability/metrics.ts";
import type { ChildAccess, Evaluate, EventSink, GitAccess, RunAccess, StorageFactory } from "./ports.ts";
import type { Outcome } from "./queue.ts";
import type { Observed } from "./types.ts";

export type ReconcilerDeps = {
  runs: RunAccess;
  children: ChildAccess;
  events: EventSink;
  log: Logger;
  now?: () => Date;
  /** How often to look at a running round even without a Job event. */
  activeRoundResyncMs?: number;
  /** progress.json of a training round is read at most this often (default PROGRESS_INTERVAL_MS, the trainer's). */
  progressIntervalMs?: number;
  /** Image of evaluation Jobs; unset evaluates in the operator process. */
  evaluatorImage?: string | undefined;
  /** S3 for a connection; real S3 (AWS, MinIO, Ceph) unless a test passes in-memory stores. */
  storage?: StorageFactory;
  evaluate?: Evaluate;
  /**
   * A reconcile still running after this returns "retry" and frees its worker; the run is not
   * reconciled again until it ends, and stuck() names it (every S3 and API call is bounded, so
   * this is a hang: /healthz fails and the kubelet restarts the pod).
   */
  reconcileDeadlineMs?: number;
  /** Architectures the trainer image ships; a run naming another is Stalled before any Job. */
  trainerArchitectures?: readonly string[] | undefined;
  /** spec.promotion.git's repositories; real Git over HTTPS unless a test passes another. */
  git?: GitAccess;
  /**
   * How long a slice folder may fail with transient S3 errors before it is an invalid slice
   * (--slice-unreadable-after; default 6 h). Until then it stays pending and later slices wait.
   */
  sliceUnreadableAfterMs?: number | undefined;
  /**
   * Whether a run without spec.source.s3.credentialsSecretRef may act with the operator's own cloud
   * identity (the default AWS chain: IRSA, Pod Identity, instance role): --allow-default-credentials,
   * off by default. Off, such a run is Stalled before any S3 call: with several teams on one
   * operator, that identity could reach other teams' buckets.
   */
  allowDefaultCredentials?: boolean | undefined;
  /**
   * Whether runs may be evaluated in this process (the operator's --in-process-evaluation); a run
   * asking for runner.mode InProcess while it is off is Stalled. Default: only without an
   * evaluator image, as the operator's configuration requires.
   */
  inProcessEvaluation?: boolean | undefined;
};

/** Real S3: one SDK client per connection, shared by the object and slice adapters. */
export function s3Storage(options: { timeoutMs?: number } = {}): StorageFactory {
  const clientFor = s3ClientPool();
  return (connection) => {
    const client = clientFor(connection);
    return {
      objects: new S3ObjectStore(client, options),
      slices: (bucket) => new S3SliceStore(client, bucket, options),
    };
  };
}

const DEFAULT_DEADLINE_MS = 15 * 60_000;

/**
 * The JSON merge patch (RFC 7386) that turns `current` into `next`: a merge patch cannot drop a
 * field by leaving it out, so fields gone from `next` are sent as null (status.currentRound once
 * no round is active). Arrays are replaced whole.
 */
export function mergePatchFor(current: unknown, next: unknown): unknown {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isObject(current) || !isObject(next)) return next;
  const patch: Record<string, unknown> = {};
  for (const k of Object.keys(current)) if (!(k in next)) patch[k] = null;
  for (const [k, v] of Object.entries(next))
    patch[k] = isObject(v) && isObject(current[k]) ? mergePatchFor(current[k], v) : v;
  return patch;
}

export function splitKey(key: string): { namespace: string; name: string } {
  const [namespace, name] = key.split("/");
  if (!namespace || !name) throw new Error(`bad key ${key}`);
  return { namespace, name };
}

export class Reconciler {
  readonly #deps: ReconcilerDeps;
  readonly #now: () => Date;
  readonly #memory = new Map<string, RunMemory>();
  /** Reconciles past their deadline that have not ended yet, by key, with when they started. */
  readonly #stuck = new Map<string, number>();

  readonly #git: GitAccess;
  readonly #observeDeps: ObserveDeps;

  constructor(deps: ReconcilerDeps) {
    this.#deps = deps;
    this.#now = deps.now ?? (() => new Date());
    this.#git = deps.git ?? new GitRepositories({ onRequest: (operation) => gitRequestsTotal.inc({ operation }) });
    this.#observeDeps = { ...deps, storage: deps.storage ?? s3Storage(), now: this.#now };
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
        mem.notifications++;
        hits.push(runKey);
      }
    }
    return hits;
  }

  #abort = new AbortController();

  /**
   * Leadership was lost: reconciles in flight write nothing more (no status, no plan, no eval.json,
   * no promotion step) from their next step on; the new leader redoes whatever they left.
   */
  abortInFlight(): void {
    this.#abort.abort(new Error("leadership lost"));
    this.#abort = new AbortController();
  }

  /** Keys whose reconcile outlived its deadline and is still running. */
  stuck(): string[] {
    return [...this.#stuck.keys()];
  }

  reconcile = async (key: string): Promise<Outcome> => {
    if (this.#stuck.has(key)) {
      return { kind: "retry", error: new Error(`${key}: the previous reconcile is still running past its deadline`) };
    }
    const deadlineMs = this.#deps.reconcileDeadlineMs ?? DEFAULT_DEADLINE_MS;
    const started = Date.now();
    const work = this.#reconcile(key);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<"deadline">((resolve) => {
      timer = setTimeout(() => resolve("deadline"), deadlineMs);
    });
    const first = await Promise.race([work, deadline]);
    clearTimeout(timer);
    if (first !== "deadline") return first;
    this.#stuck.set(key, started);
    this.#deps.log.error("reconcile past its deadline", { key, deadlineMs });
    void work.catch(() => undefined).finally(() => this.#stuck.delete(key));
    return { kind: "retry", error: new Error(`${key}: reconcile still running after ${deadlineMs} ms`) };
  };

  /** observe, decide and act, then the status patch, the document cache and the events; errors end in status. */
  #reconcile = async (key: string): Promise<Outcome> => {
    const signal = this.#abort.signal;
    const { namespace, name } = splitKey(key);
    const log = this.#deps.log.child({ namespace, name });
    let seen: RawObject | undefined;
    try {
      const run = await this.#deps.runs.get(namespace, name);
      seen = run;
      if (!run || run.metadata.deletionTimestamp) {
        this.forget(key); // owned Jobs go by garbage collection; S3 artifacts stay
        return { kind: "done" };
      }
      const parsed = continualClipRunSpec.safeParse(run.spec);
      const observed: Observed = parsed.success
        ? await observeRun(this.#observeDeps, this.#memory, key, run, parsed.data, log)
        : { rounds: [] };
      const mem = this.#memory.get(key);
      const acted = await this.#decideAndAct(run, observed, parsed, mem, log, signal);
      if ("outcome" in acted) return acted.outcome;
      const { decision, refused } = acted;
      signal.throwIfAborted();
      if (!(await this.#write(run, decision, observed, mem, log))) return { kind: "done" };
      observeRunStatus(namespace, name, decision.status ?? (run.status as Parameters<typeof observeRunStatus>[2]));
      if (decision.outcome === "stalled") return { kind: "stalled" };
      if (refused) return { kind: "retry", error: refused };
      return { kind: "requeueAfter", ms: this.#requeueAfterMs(run, decision, mem) };
    } catch (error) {
      log.warn("reconcile failed", { error: errorMessage(error) });
      // Whatever failed, the run says so (Ready=False with the reason) before the retry, unless
      // leadership was lost: a deposed leader writes nothing more.
      if (seen && !signal.aborted) await this.#patchFailure(seen, error).catch(() => undefined);
      return { kind: "retry", error };
    }
  };

  /**
   * The decision, and its actions carried out. An action refused ends in a decision made again with
   * the refusal as the run's problem (`refused`: then back off, the same object would be refused
   * again); actions that change what the next decision depends on end the pass (`outcome`: requeue now).
   */
  async #decideAndAct(
    run: RawObject,
    observed: Observed,
    parsed: ReturnType<typeof continualClipRunSpec.safeParse>,
    mem: RunMemory | undefined,
    log: Logger,
    signal: AbortSignal,
  ): Promise<{ decision: Decision; refused?: Error | undefined } | { outcome: Outcome }> {
    const decision = decide(run, observed, this.#now(), parsed);
    if (!decision.actions.length || !decision.spec || !mem) return { decision };
    const { children, events } = this.#deps;
    const ctx = {
      run,
      spec: decision.spec,
      mem,
      children,
      events,
      log,
      now: this.#now,
      evaluate: this.#deps.evaluate ?? evaluateRound,
      git: this.#git,
      signal,
      // An in-process evaluation ends well before the reconcile's own deadline would call it stuck.
      evaluationLimits: { timeoutMs: Math.floor(0.8 * (this.#deps.reconcileDeadlineMs ?? DEFAULT_DEADLINE_MS)) },
    };
    // What act writes (plans, eval.json, verdicts, versions) must be read back, not remembered.
    mem.listing = undefined;
    mem.promotion = undefined;
    const result = await act(ctx, decision.actions);
    if (result.problem) {
      // Show what was refused in status, then back off: the same object would be refused again.
      const refused = new Error(result.problem.message);
      return { decision: decide(run, { ...observed, problem: result.problem }, this.#now(), parsed), refused };
    }
    if (!result.complete) return { outcome: { kind: "requeueAfter", ms: 0 } };
    return { decision };
  }

  /**
   * The status patch, the round document cache (for the next operator process, document-cache.ts)
   * and the decision's events. Returns false when the run was gone or changed under the patch.
   */
  async #write(
    run: RawObject,
    decision: Decision,
    observed: Observed,
    mem: RunMemory | undefined,
    log: Logger,
  ): Promise<boolean> {
    const { namespace, name } = run.metadata;
    if (decision.status) {
      const patch = mergePatchFor(run.status, decision.status) as ContinualClipRunStatus;
      const ok = await this.#deps.runs.patchStatus(namespace, name, patch);
      if (!ok) return false;
      log.info("status updated", {
        generation: run.metadata.generation,
        phase: decision.status.phase,
        round: decision.status.currentRound?.index,
      });
    }
    if (mem && decision.spec && !observed.problem) {
      await saveDocumentCache(mem, decision.spec.artifacts.s3, mem.storage.objects).catch((error: unknown) =>
        log.warn("round document cache not written", { error: errorMessage(error) }),
      );
    }
    for (const e of decision.events) {
      log.info("event", e);
      await this.#deps.events.record(run, e.type, e.reason, e.message);
    }
    return true;
  }

  /** The next poll; sooner while a round is active, which changes without the run or a Job changing. */
  #requeueAfterMs(run: RawObject, decision: Decision, mem: RunMemory | undefined): number {
    const untilPoll = mem ? Math.max(0, mem.nextPollAt - Date.now()) : 60_000;
    const active = decision.status
      ? decision.status.currentRound
      : (run.status as { currentRound?: unknown } | undefined)?.currentRound;
    return active ? Math.min(untilPoll, this.#deps.activeRoundResyncMs ?? 30_000) : untilPoll;
  }

  async #patchFailure(run: RawObject, error: unknown): Promise<void> {
    const current = (run.status ?? {}) as ContinualClipRunStatus;
    const generation = run.metadata.generation ?? 0;
    const message = errorMessage(error);
    const now = this.#now();
    const ready = findCondition(current.conditions, "Ready");
    if (ready?.status === "False" && ready.reason === "ReconcileFailed" && ready.message === message) return;
    const conditions = [
      { type: "Ready" as const, status: "False" as const, reason: "ReconcileFailed", message },
      { type: "Degraded" as const, status: "True" as const, reason: "ReconcileFailed", message },
    ].reduce((list, u) => setCondition(list, u, generation, now), current.conditions ?? []);
    const next = { ...current, conditions };
    const patch = mergePatchFor(run.status, next) as ContinualClipRunStatus;
    await this.#deps.runs.patchStatus(run.metadata.namespace, run.metadata.name, patch);
    await this.#deps.events.record(run, "Warning", "ReconcileFailed", message);
  }
}
