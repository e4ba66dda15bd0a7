// A list+watch loop that survives the real world. client-node's informer is known to stop
// receiving events silently, so this one owns its loop:
// - lists, then watches from the list's resourceVersion with bookmarks;
// - relists on 410 Gone (resourceVersion too old);
// - reconnects with capped exponential backoff and jitter when the connection drops;
// - a watchdog restarts a watch that has been silent (no event, no bookmark) for too long;
// - the server closes each watch after timeoutSeconds, and we resume from the last version.
// Handlers only receive keys; the reconciler reads current state itself.
import * as k8s from "@kubernetes/client-node";
import type { Logger } from "../observability/log.ts";
import { errorMessage } from "../observability/log.ts";
import { isGone } from "./errors.ts";
import type { ListResult, RawObject } from "./client.ts";

export type WatchEvent = { type: "ADDED" | "MODIFIED" | "DELETED"; object: RawObject };

export type ResilientWatchOptions = {
  name: string;
  path: string;
  list: () => Promise<ListResult>;
  onEvent: (event: WatchEvent) => void;
  /** Called after every successful (re)list with all current objects. */
  onList?: (items: RawObject[]) => void;
  timeoutSeconds: number;
  /** A watch without any event or bookmark for this long is restarted. */
  silenceMs?: number;
  maxBackoffMs?: number;
  log: Logger;
};

export class ResilientWatch {
  readonly #kc: k8s.KubeConfig;
  readonly #opts: Required<Omit<ResilientWatchOptions, "onList">> & Pick<ResilientWatchOptions, "onList">;
  #resourceVersion = "";
  #abort: AbortController | undefined;
  #stopped = false;
  #failures = 0;
  #lastActivity = Date.now();
  #watchdog: NodeJS.Timeout | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  /** Counters for tests and metrics. */
  readonly stats = { lists: 0, watches: 0, relistsOnGone: 0, watchdogRestarts: 0, reconnects: 0 };

  constructor(kc: k8s.KubeConfig, opts: ResilientWatchOptions) {
    this.#kc = kc;
    this.#opts = { silenceMs: (opts.timeoutSeconds + 90) * 1000, maxBackoffMs: 30_000, ...opts };
  }

  start(): void {
    this.#stopped = false;
    void this.#run(true);
    this.#watchdog = setInterval(() => this.#checkSilence(), Math.min(5000, this.#opts.silenceMs / 2));
    this.#watchdog.unref();
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#watchdog);
    clearTimeout(this.#restartTimer);
    this.#abort?.abort();
  }

  #checkSilence(): void {
    if (this.#stopped || !this.#abort) return;
    if (Date.now() - this.#lastActivity > this.#opts.silenceMs) {
      this.stats.watchdogRestarts++;
      this.#opts.log.warn("watch silent for too long; restarting with a relist", { watch: this.#opts.name });
      this.#resourceVersion = "";
      this.#abort.abort();
    }
  }

  async #run(relist: boolean): Promise<void> {
    if (this.#stopped) return;
    try {
      if (relist || !this.#resourceVersion) {
        const { items, resourceVersion } = await this.#opts.list();
        this.stats.lists++;
        this.#resourceVersion = resourceVersion;
        this.#opts.onList?.(items);
      }
      await this.#watch();
    } catch (err) {
      this.#scheduleRestart(err, isGone(err));
    }
  }

  async #watch(): Promise<void> {
    this.stats.watches++;
    this.#lastActivity = Date.now();
    let ended = false;
    const watch = new k8s.Watch(this.#kc);
    this.#abort = await watch.watch(
      this.#opts.path,
      { resourceVersion: this.#resourceVersion, allowWatchBookmarks: true, timeoutSeconds: this.#opts.timeoutSeconds },
      (type, obj: RawObject & { code?: number; message?: string }) => {
        this.#lastActivity = Date.now();
        if (type === "ERROR") {
          // A Status object: 410 means our resourceVersion is too old to resume from.
          if (obj.code === 410) {
            this.stats.relistsOnGone++;
            this.#resourceVersion = "";
          }
          this.#opts.log.info("watch error event", { watch: this.#opts.name, code: obj.code, message: obj.message });
          this.#abort?.abort();
          return;
        }
        const rv = obj.metadata?.resourceVersion;
        if (rv) this.#resourceVersion = rv;
        if (type === "BOOKMARK") return;
        this.#failures = 0;
        this.#opts.onEvent({ type: type as WatchEvent["type"], object: obj });
      },
      (err) => {
        if (ended) return;
        ended = true;
        this.#abort = undefined;
        if (this.#stopped) return;
        const name = (err as { name?: string } | null)?.name;
        // client-node aborts a watch that sent no data for 30 s with TimeoutError: that is the
        // normal end of a quiet watch, not a failure, so it resumes without backoff.
        if (err && name !== "AbortError" && name !== "TimeoutError") {
          this.#scheduleRestart(err, isGone(err));
        } else {
          // A server-side timeout or our own abort: resume at once (relist if the version was dropped).
          void this.#run(!this.#resourceVersion);
        }
      },
    );
    this.#failures = 0;
  }

  #scheduleRestart(err: unknown, relist: boolean): void {
    if (this.#stopped) return;
    this.#failures++;
    this.stats.reconnects++;
    const base = Math.min(this.#opts.maxBackoffMs, 250 * 2 ** Math.min(this.#failures, 10));
    const delay = Math.round(base / 2 + Math.random() * (base / 2));
    if (relist) this.#resourceVersion = "";
    this.#opts.log.warn("watch failed; retrying", { watch: this.#opts.name, error: errorMessage(err), delayMs: delay });
    this.#restartTimer = setTimeout(() => void this.#run(relist || !this.#resourceVersion), delay);
  }
}

/**
 * The objects one or more ResilientWatches deliver (one per namespace scope), kept as a projection
 * so a cache of thousands of objects holds only what readers need. Readers must not trust it
 * before `synced` (every scope listed at least once since the last reset); until then they read
 * the API server. `put` writes through what our own create or patch returned, so the next
 * reconcile sees it even before the watch event arrives; a watch event carrying an older
 * resourceVersion than the cached one (the echo of an earlier write) does not roll it back.
 */
export class WatchCache<T> {
  readonly #project: (o: RawObject) => T | undefined;
  readonly #indexOf: ((value: T) => string | undefined) | undefined;
  readonly #scopes: Set<string>;
  readonly #listed = new Set<string>();
  readonly #items = new Map<string, { namespace: string; rv: string; value: T }>();
  readonly #index = new Map<string, Set<string>>();

  constructor(opts: {
    scopes: readonly (string | undefined)[];
    project: (o: RawObject) => T | undefined;
    indexBy?: (value: T) => string | undefined;
  }) {
    this.#scopes = new Set(opts.scopes.map(scopeKey));
    this.#project = opts.project;
    this.#indexOf = opts.indexBy;
  }

  get synced(): boolean {
    return [...this.#scopes].every((s) => this.#listed.has(s));
  }

  get size(): number {
    return this.#items.size;
  }

  /** A (re)list of one scope: its objects replace whatever the cache held for it. */
  replace(scope: string | undefined, items: RawObject[]): void {
    const s = scopeKey(scope);
    for (const [key, entry] of this.#items) if (s === "*" || entry.namespace === s) this.#remove(key);
    for (const item of items) this.put(item, true);
    this.#listed.add(s);
  }

  apply(event: WatchEvent): void {
    if (event.type === "DELETED") this.#remove(keyOf(event.object));
    else this.put(event.object);
  }

  /** Stores an object (from a watch, a list or our own write); older versions never win. */
  put(object: RawObject, fromList = false): void {
    const key = keyOf(object);
    const rv = object.metadata.resourceVersion ?? "";
    const current = this.#items.get(key);
    if (!fromList && current && olderThan(rv, current.rv)) return;
    const value = this.#project(object);
    this.#remove(key);
    if (value === undefined) return;
    this.#items.set(key, { namespace: object.metadata.namespace, rv, value });
    const ix = this.#indexOf?.(value);
    if (ix !== undefined) {
      let set = this.#index.get(ix);
      if (!set) {
        set = new Set();
        this.#index.set(ix, set);
      }
      set.add(key);
    }
  }

  get(namespace: string, name: string): T | undefined {
    return this.#items.get(`${namespace}/${name}`)?.value;
  }

  /** The values whose index key (indexBy) is ix. */
  byIndex(ix: string): T[] {
    return [...(this.#index.get(ix) ?? [])].map((k) => this.#items.get(k)!.value);
  }

  /** Leadership lost or the watches stopped: forget everything, readers go to the API again. */
  reset(): void {
    this.#items.clear();
    this.#index.clear();
    this.#listed.clear();
  }

  #remove(key: string): void {
    const entry = this.#items.get(key);
    if (!entry) return;
    this.#items.delete(key);
    const ix = this.#indexOf?.(entry.value);
    if (ix !== undefined) {
      const set = this.#index.get(ix);
      set?.delete(key);
      if (set?.size === 0) this.#index.delete(ix);
    }
  }
}

const scopeKey = (scope: string | undefined) => scope ?? "*";
const keyOf = (o: RawObject) => `${o.metadata.namespace}/${o.metadata.name}`;
/**
 * resourceVersions are opaque strings by contract, but every API server backed by etcd issues
 * increasing integers; only when both are integers is one known to be older.
 */
function olderThan(a: string, b: string): boolean {
  if (!/^\d+$/.test(a) || !/^\d+$/.test(b)) return false;
  return a.length !== b.length ? a.length < b.length : a < b;
}
