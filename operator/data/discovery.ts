// Per-run slice discovery. One SliceDiscovery per ContinualClipRun holds what is known about the
// run's source prefix and a StartAfter cursor, so a steady-state poll is a single ListObjectsV2
// request (Delimiter '/', StartAfter past the last folder seen) whatever the number of slices.
//
// A folder is checked once when it first appears: one listing of the folder, then manifest.json
// once _SUCCESS is there. A folder without _SUCCESS is pending and costs one HEAD per poll until
// the marker lands. Notifications (notify) ask for a folder to be looked at again, which is how late
// slices and manifest changes are seen; recheck() does the same without a notification.
import { compareSliceIds, MANIFEST_NAME, SUCCESS_MARKER } from "../api/slice-manifest.ts";
import { classifyS3Error, type S3Problem } from "../s3/errors.ts";
import { inPool } from "../s3/client.ts";
import type { ObjectInfo, SliceStore } from "../s3/slice-store.ts";
import { validateSlice, type FolderContents, type InvalidSlice, type Slice } from "./validate.ts";

export type { InvalidSlice, Slice } from "./validate.ts";

export type DiscoveryWarning = { id: string; reason: "ManifestChanged"; message: string };

export type DiscoveryHealth =
  | { ok: true }
  | { ok: false; reason: string; message: string; consecutiveFailures: number };

export type DiscoveryResult = {
  /** Valid slices, in slice order. */
  slices: Slice[];
  /** Ids that became valid in this poll, in slice order. */
  newSlices: string[];
  /** Every invalid slice known, in slice order. */
  invalid: InvalidSlice[];
  /** Slices found invalid (or invalid for a new reason) in this poll: one Warning event each. */
  newInvalid: InvalidSlice[];
  /** Folders seen without _SUCCESS yet, in slice order. */
  pending: string[];
  /** Manifest changes of known slices seen in this poll. */
  warnings: DiscoveryWarning[];
  /** S3 failures of this poll; nothing is lost, the affected folders are retried next poll. */
  errors: S3Problem[];
  /** Folders that could not be read in this poll (kept pending), in slice order. */
  unreadable: FolderTrouble[];
  /** Degraded when errors is not empty. */
  health: DiscoveryHealth;
  /** When to poll next: the poll interval with jitter, or a backoff with jitter after errors. */
  nextPollMs: number;
};

export type DiscoveryOptions = {
  store: SliceStore;
  /** Source prefix: "" or ending in '/'. */
  prefix: string;
  /** spec.source.startAfter: slices sorting at or before it are ignored. */
  startAfter?: string | undefined;
  pollIntervalMs: number;
  /** Folders checked in parallel. */
  concurrency?: number;
  backoff?: { baseMs: number; capMs: number };
  random?: () => number;
  /**
   * Polls in a row a folder may get a permanent answer (403 on its manifest, a 4xx) before it is an
   * invalid slice (Unreadable): until then the pass is incomplete and no round is planned past it;
   * after, one unreadable folder no longer holds up the run.
   */
  maxFolderFailures?: number;
  /**
   * How long a folder may fail with transient errors only (503, throttling, timeouts, resets, 5xx)
   * before it is an invalid slice (the operator's --slice-unreadable-after, hours by default). Until
   * then it stays pending: retried with backoff, the pass incomplete, later slices held back.
   */
  unreadableAfterMs?: number;
  /** The clock (ms), for the unreadable-after bound; tests pass their own. */
  now?: () => number;
};

/** The default of --slice-unreadable-after: a blip of seconds or an outage of an hour is waited out. */
export const DEFAULT_UNREADABLE_AFTER_MS = 6 * 3600_000;

/**
 * Whether S3 gave a permanent answer about one key: access denied on it, or another 4xx the same
 * request will get again. Throttling, timeouts, resets and 5xx are transient; so are bad credentials
 * and a missing bucket, which concern the whole source (its health, not this slice).
 */
export function isPermanentFolderProblem(p: S3Problem): boolean {
  return p.errorClass === "AccessDenied" || p.errorClass === "ClientError";
}

/** A folder whose reads keep failing: since when, how many polls, and the last problem. */
export type FolderTrouble = {
  id: string;
  since: number;
  polls: number;
  problem: S3Problem;
  permanent: boolean;
  /** When transient failures make it invalid (ms), if they go on. */
  invalidAfter?: number | undefined;
};

type Unsettled = "new" | "pending";

type Fetched =
  | { id: string; kind: "pending" }
  | { id: string; kind: "contents"; contents: FolderContents }
  | { id: string; kind: "error"; problem: S3Problem };

/** Exponential backoff with equal jitter: a delay in [d/2, d] for d = min(cap, base * 2^(failures-1)). */
export function backoffDelay(
  failures: number,
  backoff: { baseMs: number; capMs: number },
  random: () => number,
): number {
  const d = Math.min(backoff.capMs, backoff.baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(d / 2 + (random() * d) / 2);
}

function byteCompare(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf-8"), Buffer.from(b, "utf-8"));
}

/** The StartAfter key that skips folder `<prefix><name>/` and everything in it: '0' follows '/'. */
function pastFolder(folder: string): string {
  return folder.slice(0, -1) + "0";
}

export class SliceDiscovery {
  readonly #store: SliceStore;
  readonly #prefix: string;
  readonly #startAfter: string | undefined;
  readonly #pollIntervalMs: number;
  readonly #concurrency: number;
  readonly #backoff: { baseMs: number; capMs: number };
  readonly #random: () => number;
  readonly #maxFolderFailures: number;
  readonly #unreadableAfterMs: number;
  readonly #now: () => number;
  /** Folders whose reads failed at the last polls: since when, how many polls in a row. */
  readonly #folderFailures = new Map<string, FolderTrouble>();

  readonly #valid = new Map<string, Slice>();
  readonly #invalid = new Map<string, InvalidSlice>();
  readonly #unsettled = new Map<string, Unsettled>();
  readonly #recheck = new Set<string>();
  /** Consumed slice ids and the fingerprint they had when a round consumed them. */
  readonly #consumed = new Map<string, string | undefined>();
  #consumedMax: string | undefined;
  #cursor: string | undefined;
  #failures = 0;
  #sorted: Slice[] | undefined;
  #running: Promise<DiscoveryResult> | undefined;
  #queued: Promise<DiscoveryResult> | undefined;

  constructor(o: DiscoveryOptions) {
    if (o.prefix !== "" && !o.prefix.endsWith("/")) throw new Error(`prefix must be empty or end in '/': ${o.prefix}`);
    this.#store = o.store;
    this.#prefix = o.prefix;
    this.#startAfter = o.startAfter || undefined;
    this.#pollIntervalMs = o.pollIntervalMs;
    this.#concurrency = o.concurrency ?? 16;
    this.#backoff = o.backoff ?? { baseMs: 1000, capMs: Math.max(1000, o.pollIntervalMs) };
    this.#random = o.random ?? Math.random;
    this.#maxFolderFailures = o.maxFolderFailures ?? 5;
    this.#unreadableAfterMs = o.unreadableAfterMs ?? DEFAULT_UNREADABLE_AFTER_MS;
    this.#now = o.now ?? Date.now;
    this.#cursor = this.#startAfter ? pastFolder(`${o.prefix}${this.#startAfter}/`) : undefined;
  }

  get bucket(): string {
    return this.#store.bucket;
  }

  /** Whether an S3 event for bucket/key concerns a slice of this source (the webhook bench uses it). */
  matches(bucket: string, key: string): boolean {
    return bucket === this.#store.bucket && this.sliceIdOf(key) !== undefined;
  }

  /** The slice id a key of this source belongs to, or undefined when the key is outside it. */
  sliceIdOf(key: string): string | undefined {
    if (!key.startsWith(this.#prefix)) return undefined;
    const rest = key.slice(this.#prefix.length);
    const slash = rest.indexOf("/");
    if (slash <= 0) return undefined;
    const id = rest.slice(0, slash);
    if (this.#startAfter && compareSliceIds(id, this.#startAfter) <= 0) return undefined;
    return id;
  }

  /**
   * An S3 event for `key` arrived. _SUCCESS and manifest.json of a slice make the next poll look
   * at that folder again (also when it sorts before the cursor: a late slice); any other key is
   * ignored. Returns whether the key mattered, i.e. whether to poll now.
   */
  notify(key: string): boolean {
    const id = this.sliceIdOf(key);
    if (id === undefined) return false;
    const name = key.slice(this.#prefix.length + id.length + 1);
    if (name !== SUCCESS_MARKER && name !== MANIFEST_NAME) return false;
    this.#recheck.add(id);
    return true;
  }

  /** Makes the next poll re-read these slices (default: every consumed slice); tests and tools use it. */
  recheck(ids?: Iterable<string>): void {
    for (const id of ids ?? this.#consumed.keys()) this.#recheck.add(id);
  }

  /**
   * Records that rounds trained on these slices. A later manifest change of a consumed slice is a
   * warning and leaves the consumed version in place; a slice completing after a later one was
   * consumed is invalid (OutOfOrder). observe.ts calls it with the new slices of every round plan
   * it sees (failed rounds excepted).
   */
  markConsumed(ids: Iterable<string>): void {
    for (const id of ids) {
      if (!this.#consumed.has(id) || this.#consumed.get(id) === undefined)
        this.#consumed.set(id, this.#valid.get(id)?.fingerprint);
      if (this.#consumedMax === undefined || compareSliceIds(id, this.#consumedMax) > 0) this.#consumedMax = id;
    }
  }

  /** Valid slices known now, in slice order. */
  slices(): Slice[] {
    this.#sorted ??= [...this.#valid.values()].sort((a, b) => compareSliceIds(a.id, b.id));
    return this.#sorted;
  }

  /** Runs one discovery pass. Concurrent calls are coalesced: at most one pass runs, one waits. */
  poll(): Promise<DiscoveryResult> {
    if (!this.#running) {
      this.#running = this.#pass().finally(() => {
        this.#running = undefined;
      });
      return this.#running;
    }
    this.#queued ??= this.#running.then(
      () => this.#next(),
      () => this.#next(),
    );
    return this.#queued;
  }

  #next(): Promise<DiscoveryResult> {
    this.#queued = undefined;
    return this.poll();
  }

  async #pass(): Promise<DiscoveryResult> {
    const errors: S3Problem[] = [];
    // Take the recheck requests now: one that arrives during this pass is kept for the next.
    const rechecks = new Set(this.#recheck);
    this.#recheck.clear();
    const from = this.#cursor;
    let fresh: string[] = [];
    try {
      fresh = await this.#listNewFolders();
    } catch (err) {
      errors.push(problemOf(err));
    }
    // The keys of all new folders come from one listing of the range the cursor just crossed:
    // O(new keys / 1000) requests, instead of one listing per folder (which a cold start of
    // thousands of slices would pay).
    let contents = new Map<string, ObjectInfo[]>();
    if (fresh.length && this.#cursor !== undefined) {
      try {
        contents = this.#groupByFolder(await this.#store.listRange(this.#prefix, from, this.#cursor), new Set(fresh));
      } catch (err) {
        errors.push(problemOf(err)); // the folders stay "new" and are listed one by one
      }
    }

    const ids = [...new Set([...this.#unsettled.keys(), ...rechecks])].sort(compareSliceIds);
    const fetched = await inPool(ids, this.#concurrency, (id) => this.#fetch(id, rechecks.has(id), contents.get(id)));

    const newSlices: string[] = [];
    const newInvalid: InvalidSlice[] = [];
    const warnings: DiscoveryWarning[] = [];
    const unreadable: FolderTrouble[] = [];
    const now = this.#now();
    for (const f of fetched) {
      if (f.kind === "error") {
        const failed = this.#folderFailed(f.id, f.problem, now);
        if ("invalid" in failed) {
          newInvalid.push(failed.invalid);
          continue;
        }
        errors.push(f.problem);
        // A folder not yet valid holds back the slices after it; a failed re-read of a valid one does not.
        if (!this.#valid.has(f.id)) unreadable.push(failed.trouble);
        if (rechecks.has(f.id)) this.#recheck.add(f.id);
        continue; // stays unsettled / queued for recheck: retried next poll
      }
      this.#folderFailures.delete(f.id);
      if (f.kind === "pending") {
        if (!this.#valid.has(f.id) && !this.#invalid.has(f.id)) this.#unsettled.set(f.id, "pending");
        continue;
      }
      this.#unsettled.delete(f.id);
      this.#apply(f.contents, { newSlices, newInvalid, warnings });
    }

    this.#failures = errors.length ? this.#failures + 1 : 0;
    const first = errors[0];
    return {
      slices: this.slices(),
      newSlices,
      invalid: [...this.#invalid.values()].sort((a, b) => compareSliceIds(a.id, b.id)),
      newInvalid,
      pending: [...this.#unsettled]
        .filter(([, k]) => k === "pending")
        .map(([id]) => id)
        .sort(compareSliceIds),
      warnings,
      errors,
      unreadable,
      health: first
        ? { ok: false, reason: first.reason, message: first.message, consecutiveFailures: this.#failures }
        : { ok: true },
      nextPollMs: first
        ? backoffDelay(this.#failures, this.#backoff, this.#random)
        : Math.round(this.#pollIntervalMs * (0.9 + 0.2 * this.#random())),
    };
  }

  /**
   * A folder that could not be read this pass: its trouble so far, or, past the bounds, an invalid
   * slice. Only a permanent answer repeated over several polls, or transient failures lasting past
   * the long bound, make a slice invalid: a blip must never skip a slice (slices are trained in order).
   */
  #folderFailed(id: string, problem: S3Problem, now: number): { invalid: InvalidSlice } | { trouble: FolderTrouble } {
    const before = this.#folderFailures.get(id);
    const permanent = isPermanentFolderProblem(problem);
    const trouble: FolderTrouble = {
      id,
      since: before?.since ?? now,
      polls: (before?.polls ?? 0) + 1,
      problem,
      permanent,
      ...(permanent ? {} : { invalidAfter: (before?.since ?? now) + this.#unreadableAfterMs }),
    };
    this.#folderFailures.set(id, trouble);
    const givenUp =
      trouble.polls >= this.#maxFolderFailures &&
      (permanent || now - trouble.since >= this.#unreadableAfterMs) &&
      !this.#valid.has(id);
    if (!givenUp) return { trouble };
    const invalid: InvalidSlice = {
      id,
      reason: "Unreadable",
      message: permanent
        ? `${trouble.polls} polls in a row: ${problem.reason}: ${problem.message}`
        : `failing for ${formatSpan(now - trouble.since)} (${trouble.polls} polls): ${problem.reason}: ${problem.message}`,
    };
    this.#invalid.set(id, invalid);
    this.#unsettled.delete(id);
    this.#folderFailures.delete(id);
    return { invalid };
  }

  #groupByFolder(objects: ObjectInfo[], ids: Set<string>): Map<string, ObjectInfo[]> {
    const out = new Map<string, ObjectInfo[]>([...ids].map((id) => [id, []]));
    for (const o of objects) {
      const rest = o.key.slice(this.#prefix.length);
      const slash = rest.indexOf("/");
      if (slash > 0) out.get(rest.slice(0, slash))?.push(o);
    }
    return out;
  }

  /**
   * Lists folders after the cursor, page by page; the cursor only moves past folders recorded.
   * Returns the ids of folders seen for the first time.
   */
  async #listNewFolders(): Promise<string[]> {
    const fresh: string[] = [];
    for (;;) {
      const page = await this.#store.listFolders(this.#prefix, this.#cursor);
      let last: string | undefined;
      for (const folder of page.folders) {
        const id = folder.slice(this.#prefix.length, -1);
        const pos = pastFolder(folder);
        if (last === undefined || byteCompare(pos, last) > 0) last = pos;
        if (this.#startAfter && compareSliceIds(id, this.#startAfter) <= 0) continue;
        if (!this.#valid.has(id) && !this.#invalid.has(id) && !this.#unsettled.has(id)) {
          this.#unsettled.set(id, "new");
          fresh.push(id);
        }
      }
      for (const key of page.keys) if (last === undefined || byteCompare(key, last) > 0) last = key;
      if (last !== undefined && (this.#cursor === undefined || byteCompare(last, this.#cursor) > 0))
        this.#cursor = last;
      if (!page.isTruncated || last === undefined) return fresh;
    }
  }

  async #fetch(id: string, isRecheck: boolean, listed: ObjectInfo[] | undefined): Promise<Fetched> {
    const folder = `${this.#prefix}${id}/`;
    const contents = (objects: FolderContents["objects"], manifestText: string | undefined): Fetched => ({
      id,
      kind: "contents",
      contents: { bucket: this.#store.bucket, folder, id, objects, manifestText },
    });
    try {
      if (this.#unsettled.get(id) === "pending" && !isRecheck) {
        if (!(await this.#store.exists(folder + SUCCESS_MARKER))) return { id, kind: "pending" };
      }
      const objects = listed && !isRecheck ? listed : await this.#store.listObjects(folder);
      if (!objects.some((o) => o.key === folder + SUCCESS_MARKER)) return { id, kind: "pending" };
      const manifest = await this.#store.getText(folder + MANIFEST_NAME);
      return contents(objects, manifest?.text);
    } catch (err) {
      return { id, kind: "error", problem: problemOf(err) };
    }
  }

  #apply(
    contents: FolderContents,
    out: { newSlices: string[]; newInvalid: InvalidSlice[]; warnings: DiscoveryWarning[] },
  ): void {
    const id = contents.id;
    const v = validateSlice(contents, (other) => (other === id ? undefined : this.#valid.get(other)));
    const prev = this.#valid.get(id);
    const isConsumed = this.#consumed.has(id);
    const consumedPrint = this.#consumed.get(id);

    if (prev || consumedPrint !== undefined) {
      const was = prev?.fingerprint ?? consumedPrint;
      const now = v.ok ? v.slice.fingerprint : undefined;
      if (was !== now) {
        const what = v.ok ? "its manifest changed" : `it is now invalid (${v.invalid.reason}: ${v.invalid.message})`;
        out.warnings.push({
          id,
          reason: "ManifestChanged",
          message: isConsumed
            ? `slice ${id} changed after a round consumed it: ${what}; slices are immutable, rounds keep using the consumed version`
            : `slice ${id} changed after it was discovered: ${what}`,
        });
      }
      if (isConsumed && prev) return; // keep what was trained on
    }

    if (!v.ok) {
      if (prev) this.#dropValid(id);
      const before = this.#invalid.get(id);
      if (!before || before.reason !== v.invalid.reason || before.message !== v.invalid.message)
        out.newInvalid.push(v.invalid);
      this.#invalid.set(id, v.invalid);
      return;
    }

    if (!prev && !isConsumed && this.#consumedMax !== undefined && compareSliceIds(id, this.#consumedMax) < 0) {
      const invalid: InvalidSlice = {
        id,
        reason: "OutOfOrder",
        message: `slice ${id} completed after rounds already trained on the later slice ${this.#consumedMax}; slices must land in time order`,
      };
      const before = this.#invalid.get(id);
      if (!before || before.reason !== invalid.reason) out.newInvalid.push(invalid);
      this.#invalid.set(id, invalid);
      return;
    }

    this.#invalid.delete(id);
    this.#valid.set(id, v.slice);
    this.#sorted = undefined;
    if (isConsumed && consumedPrint === undefined) this.#consumed.set(id, v.slice.fingerprint);
    if (!prev) out.newSlices.push(id);
  }

  #dropValid(id: string): void {
    this.#valid.delete(id);
    this.#sorted = undefined;
  }
}

/** "45s", "12m", "6h 5m": how long a folder has been failing, for its invalid reason. */
function formatSpan(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 120) return `${m}m`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

function problemOf(err: unknown): S3Problem {
  const p = (err as { problem?: S3Problem }).problem;
  return p ?? classifyS3Error(err);
}

/** status.slices from a discovery result; invalid entries are capped so status stays small. */
export function sliceStatus(
  r: Pick<DiscoveryResult, "slices" | "invalid">,
  consumed: number,
): { discovered: number; consumed: number; latest?: string; invalid?: { id: string; reason: string }[] } {
  const latest = r.slices[r.slices.length - 1]?.id;
  // Every invalid slice: the controller's boundStatus keeps the newest and counts them all.
  const invalid = r.invalid.map((i) => ({ id: i.id, reason: `${i.reason}: ${i.message}` }));
  return {
    discovered: r.slices.length,
    consumed,
    ...(latest ? { latest } : {}),
    ...(invalid.length ? { invalid } : {}),
  };
}
