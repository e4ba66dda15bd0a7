// A keyed work queue in the shape of client-go's: a key is queued at most once, never processed
// by two workers at once (a key added while in flight is re-queued when the worker finishes),
// failures back off per key (5 ms doubling to 1000 s), and timers requeue after a delay.
export type Outcome =
  | { kind: "done" } // healthy: forget failures; periodic resync comes from the watch
  | { kind: "requeueAfter"; ms: number } // waiting on time (poll interval, Job progress)
  | { kind: "retry"; error: unknown } // transient error: per-key exponential backoff
  | { kind: "stalled" }; // needs a spec change; no requeue

export type QueueOptions = {
  concurrency: number;
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  onError?: (key: string, error: unknown, retryInMs: number) => void;
};

export class WorkQueue {
  readonly #handler: (key: string) => Promise<Outcome>;
  readonly #opts: Required<Omit<QueueOptions, "onError">> & Pick<QueueOptions, "onError">;
  readonly #pending: string[] = [];
  readonly #queued = new Set<string>();
  readonly #inFlight = new Set<string>();
  readonly #dirty = new Set<string>();
  readonly #failures = new Map<string, number>();
  readonly #timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  #running = 0;
  #stopped = false;
  #idleWaiters: Array<() => void> = [];

  constructor(handler: (key: string) => Promise<Outcome>, opts: QueueOptions) {
    this.#handler = handler;
    this.#opts = { baseBackoffMs: 5, maxBackoffMs: 1_000_000, ...opts };
  }

  add(key: string): void {
    if (this.#stopped) return;
    if (this.#inFlight.has(key)) {
      this.#dirty.add(key);
      return;
    }
    if (this.#queued.has(key)) return;
    this.#queued.add(key);
    this.#pending.push(key);
    this.#pump();
  }

  /** Adds the key after ms; an earlier pending timer for the key wins. */
  addAfter(key: string, ms: number): void {
    if (this.#stopped) return;
    const at = Date.now() + ms;
    const existing = this.#timers.get(key);
    if (existing && existing.at <= at) return;
    if (existing) clearTimeout(existing.timer);
    const timer = setTimeout(() => {
      this.#timers.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.#timers.set(key, { at, timer });
  }

  /** Drops a key's backoff and timers (the object was deleted). */
  forget(key: string): void {
    this.#failures.delete(key);
    const t = this.#timers.get(key);
    if (t) clearTimeout(t.timer);
    this.#timers.delete(key);
  }

  get length(): number {
    return this.#pending.length;
  }

  /** Drops queued keys and timers; idle() then resolves once the keys in flight finish. */
  stop(): void {
    this.#stopped = true;
    for (const { timer } of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    this.#pending.length = 0;
    this.#queued.clear();
    this.#dirty.clear();
    this.#pump();
  }

  /** Resolves when nothing is queued or in flight (timers may still be pending). */
  idle(): Promise<void> {
    if (this.#running === 0 && this.#pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #pump(): void {
    while (!this.#stopped && this.#running < this.#opts.concurrency && this.#pending.length > 0) {
      const key = this.#pending.shift()!;
      this.#queued.delete(key);
      this.#inFlight.add(key);
      this.#running++;
      void this.#process(key);
    }
    if (this.#running === 0 && this.#pending.length === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  async #process(key: string): Promise<void> {
    let outcome: Outcome;
    try {
      outcome = await this.#handler(key);
    } catch (error) {
      outcome = { kind: "retry", error };
    }
    this.#inFlight.delete(key);
    this.#running--;
    switch (outcome.kind) {
      case "done":
      case "stalled":
        this.#failures.delete(key);
        break;
      case "requeueAfter":
        this.#failures.delete(key);
        this.addAfter(key, outcome.ms);
        break;
      case "retry": {
        const n = (this.#failures.get(key) ?? 0) + 1;
        this.#failures.set(key, n);
        const delay = Math.min(this.#opts.maxBackoffMs, this.#opts.baseBackoffMs * 2 ** (n - 1));
        this.#opts.onError?.(key, outcome.error, delay);
        this.addAfter(key, delay);
        break;
      }
    }
    if (this.#dirty.delete(key)) this.add(key);
    this.#pump();
  }
}
