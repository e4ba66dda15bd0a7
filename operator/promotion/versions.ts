// Promotion in S3: immutable version folders and the alias pointer.
//
// Crash safety comes from write order, not locks. A version folder counts only once its
// version.json exists (written after every copy), so a crash mid-copy leaves an incomplete folder
// nobody reads; the next attempt reuses that number and overwrites it. The alias pointer is written
// after version.json, so readers never follow it to a half-copied version. Repeating a promotion
// finds the complete version whose sourceUri is the round and only (re)writes the alias if it does
// not already point there. One writer per promotion prefix is assumed (the operator handles one
// reconcile per run at a time; runs must not share a promotion prefix).
import { withSlash } from "../api/common.ts";
import {
  aliasPointer,
  PROMOTED_FILES,
  PROMOTION_SCHEMA_VERSION,
  VERSION_JSON,
  versionManifest,
  type AliasPointer,
  type VersionManifest,
} from "../api/promotion.ts";
import { createHash } from "node:crypto";
import { DOCUMENT_LIMITS, readDocument } from "../s3/documents.ts";
import type { ConditionalObjectStore, ObjectStore } from "../s3/object-store.ts";

export type PromotionTarget = { bucket: string; prefix: string; alias: string };

/** Where spec.promotion puts versions and the alias. */
export function promotionTarget(p: { s3: { bucket: string; prefix: string }; alias: string }): PromotionTarget {
  return { bucket: p.s3.bucket, prefix: p.s3.prefix, alias: p.alias };
}
export type RunRef = { namespace: string; name: string; uid: string };

/**
 * Whether two run references name the same run, or a run and its predecessor: a run recreated
 * under the same namespace and name (GitOps replacing it) carries on with what the old one promoted.
 * Another namespace or name is another run, whose versions and alias are never overwritten.
 */
export function isSameRun(a: RunRef, b: RunRef): boolean {
  return a.uid === b.uid || (a.namespace === b.namespace && a.name === b.name);
}

export type PromotionOutcome =
  | {
      ok: true;
      pointer: AliasPointer;
      pointerUri: string;
      version: VersionManifest;
      copied: boolean;
      aliasWritten: boolean;
    }
  | {
      ok: false;
      reason:
        | "RoundArtifactsMissing"
        | "VersionNotFound"
        | "InvalidPromotionState"
        | "AliasOwnedByAnotherRun"
        | "PromotionPrefixShared"
        | "EvaluatedBytesChanged";
      message: string;
    };

const base = (t: PromotionTarget) => `s3://${t.bucket}/${t.prefix}`;
export const versionUri = (t: PromotionTarget, n: number) => `${base(t)}v${n}/`;
export const aliasUri = (t: PromotionTarget) => `${base(t)}${t.alias}.json`;

/** The encoder files eval.json's candidate.sha256 names, by its keys. */
export const EVALUATED_FILES = { image: "image_encoder.onnx", text: "text_encoder.onnx" } as const;

/**
 * sha256 (hex) of an object, or undefined when it does not exist: streamed by stores that can
 * (S3ObjectStore.sha256), else hashed from its bytes.
 */
export async function digestOf(store: ObjectStore, uri: string): Promise<string | undefined> {
  const streaming = store as ObjectStore & { sha256?: (uri: string) => Promise<string | undefined> };
  if (streaming.sha256) return streaming.sha256(uri);
  const bytes = await store.get(uri);
  return bytes && createHash("sha256").update(bytes).digest("hex");
}

/** invalid: version.json documents that exist but cannot be used ("<uri>: <why>"), never guessed at. */
export type VersionListing = { complete: VersionManifest[]; incomplete: number[]; invalid: string[] };

/** version.json documents by URI and ETag: a complete version never changes, so one read suffices. */
export type VersionCache = Map<string, { etag: string; manifest: VersionManifest }>;

/** The alias pointer as read: absent, valid, or why it is not. */
export type AliasRead = AliasPointer | undefined | { invalid: string };

/** Versions under the prefix: complete ones (with a valid version.json) and folders without one. */

export async function listVersions(
  store: ObjectStore,
  t: PromotionTarget,
  cache?: VersionCache,
): Promise<VersionListing> {
  const prefix = base(t);
  const seen = new Map<number, string | undefined | false>();
  for (const o of await store.list(prefix)) {
    const m = /^v([1-9][0-9]*)\/(.+)$/.exec(o.uri.slice(prefix.length));
    if (!m) continue;
    const n = Number(m[1]);
    if (m[2] === VERSION_JSON) seen.set(n, o.etag ?? "");
    else if (!seen.has(n)) seen.set(n, false);
  }
  const complete: VersionManifest[] = [];
  const incomplete: number[] = [];
  const invalid: string[] = [];
  for (const [n, etag] of [...seen.entries()].sort((a, b) => a[0] - b[0])) {
    const uri = versionUri(t, n) + VERSION_JSON;
    const hit = etag && cache?.get(uri);
    const read =
      etag === false
        ? undefined
        : hit && hit.etag === etag
          ? { value: hit.manifest }
          : await readVersionJson(store, t, n);
    if (read && "invalid" in read) invalid.push(`${uri}: ${read.invalid}`);
    const manifest = read && "value" in read ? read.value : undefined;
    if (manifest && etag && cache) cache.set(uri, { etag, manifest });
    if (manifest) complete.push(manifest);
    else incomplete.push(n);
  }
  return { complete, incomplete, invalid };
}

/** v<N>/version.json parsed with its schema (and its limit): a manifest naming another N is invalid. */
async function readVersionJson(store: ObjectStore, t: PromotionTarget, n: number) {
  const read = await readDocument(store, versionUri(t, n) + VERSION_JSON, DOCUMENT_LIMITS.version, versionManifest);
  if (read && "value" in read && read.value.version !== n)
    return { invalid: `names version ${read.value.version}, not ${n}` };
  return read;
}

export async function readVersion(
  store: ObjectStore,
  t: PromotionTarget,
  n: number,
): Promise<VersionManifest | undefined> {
  const read = await readVersionJson(store, t, n);
  return read && "value" in read ? read.value : undefined;
}

/** The alias pointer, or undefined when none exists; a malformed one is reported, not guessed at. */
export async function readAlias(store: ObjectStore, t: PromotionTarget): Promise<AliasRead> {
  const read = await readDocument(store, aliasUri(t), DOCUMENT_LIMITS.alias, aliasPointer);
  return read && "value" in read ? read.value : read;
}

function pointerFor(t: PromotionTarget, v: VersionManifest, promotedAt: string, pinned: boolean): AliasPointer {
  const uri = versionUri(t, v.version);
  const names = new Set(v.files.map((f) => f.name));
  const uris: Record<string, string> = {};
  for (const f of PROMOTED_FILES) if (names.has(f.name)) uris[f.key] = uri + f.name;
  return {
    schemaVersion: PROMOTION_SCHEMA_VERSION,
    alias: t.alias,
    version: v.version,
    round: v.round,
    run: v.run,
    uri,
    uris,
    metrics: v.metrics,
    promotedAt,
    pinned,
  };
}

/**
 * Points the alias at a version unless it already points there with the same pinned flag. A pointer
 * written by another run is refused, never replaced.
 */
async function pointAlias(
  store: ObjectStore,
  t: PromotionTarget,
  v: VersionManifest,
  now: string,
  pinned: boolean,
  signal?: AbortSignal,
): Promise<{ pointer: AliasPointer; written: boolean } | { refused: string }> {
  const current = await readAlias(store, t);
  if (current && !("invalid" in current) && !isSameRun(current.run, v.run)) {
    const r = current.run;
    return { refused: `${aliasUri(t)} was written by run ${r.namespace}/${r.name} (uid ${r.uid})` };
  }
  if (
    current &&
    !("invalid" in current) &&
    current.version === v.version &&
    current.pinned === pinned &&
    current.run.uid === v.run.uid
  ) {
    return { pointer: current, written: false };
  }
  const pointer = pointerFor(t, v, now, pinned);
  // A deposed leader writes nothing more: the new one may already have moved the alias.
  signal?.throwIfAborted();
  await store.put(aliasUri(t), JSON.stringify(pointer, null, 2) + "\n", "application/json");
  return { pointer, written: true };
}

export type PromoteRequest = {
  target: PromotionTarget;
  run: RunRef;
  round: number;
  /** s3://<artifacts>/rounds/<NNNN>/ */
  roundUri: string;
  metrics: Record<string, number>;
  now: string;
  /** false while spec.promotion.pinVersion holds the alias elsewhere: the version is still made. */
  moveAlias?: boolean;
  /**
   * sha256 of files as they were evaluated (eval.json's candidate.sha256), by file name: the copies
   * are checked against them before version.json makes the version exist, so a version holds
   * exactly the bytes that were evaluated.
   */
  expectSha256?: Record<string, string> | undefined;
  /** Aborted when leadership is lost: checked before every write. */
  signal?: AbortSignal | undefined;
};

/** claim.json: who is filling a version folder; written (If-None-Match) before the first copy. */
export const CLAIM_JSON = "claim.json";
type Claim = { run: RunRef; round: number; sourceUri: string; claimedAt: string };

/**
 * Claims version folder N for this round: two writers (runs sharing a prefix, or a deposed leader
 * and its successor) can never fill the same vN. Returns why not when another run holds it. An
 * incomplete folder this run claimed for another round (a crash mid-copy) is taken over.
 */
async function claimVersion(
  store: ConditionalObjectStore,
  dest: string,
  req: PromoteRequest,
  roundUri: string,
): Promise<string | undefined> {
  const claim: Claim = { run: req.run, round: req.round, sourceUri: roundUri, claimedAt: req.now };
  const body = JSON.stringify(claim, null, 2) + "\n";
  req.signal?.throwIfAborted();
  if (await store.putIfAbsent(dest + CLAIM_JSON, body, "application/json")) return undefined;
  let held: Partial<Claim> | undefined;
  try {
    const raw = await store.get(dest + CLAIM_JSON, { maxBytes: DOCUMENT_LIMITS.alias });
    held = JSON.parse(new TextDecoder().decode(raw ?? new Uint8Array()));
  } catch {
    held = undefined;
  }
  const r = held?.run;
  if (r && typeof r.uid === "string" && !isSameRun(r as RunRef, req.run))
    return `${dest} is being filled by run ${r.namespace}/${r.name} (uid ${r.uid}); runs must not share a promotion prefix`;
  if (held?.sourceUri !== roundUri) {
    req.signal?.throwIfAborted();
    await store.put(dest + CLAIM_JSON, body, "application/json");
  }
  return undefined;
}

/**
 * Copies a round into the next immutable version (or finds the version an earlier attempt made)
 * and points the alias at it. Safe to repeat after a crash at any step.
 */
export async function promoteRound(store: ConditionalObjectStore, req: PromoteRequest): Promise<PromotionOutcome> {
  const { target: t } = req;
  const roundUri = withSlash(req.roundUri);
  const listing = await listVersions(store, t);
  let version = listing.complete.find((v) => v.sourceUri === roundUri && isSameRun(v.run, req.run));
  const copied = !version;
  if (!version) {
    const made = await makeVersion(store, req, roundUri, listing.complete);
    if (!made.ok) return made;
    version = made.version;
  }
  if (req.moveAlias === false) {
    const current = await readAlias(store, t);
    if (current && "invalid" in current)
      return { ok: false, reason: "InvalidPromotionState", message: `${aliasUri(t)}: ${current.invalid}` };
    if (!current)
      return {
        ok: false,
        reason: "InvalidPromotionState",
        message: `alias ${t.alias} is pinned but ${aliasUri(t)} does not exist`,
      };
    return { ok: true, pointer: current, pointerUri: aliasUri(t), version, copied, aliasWritten: false };
  }
  return pointedOutcome(t, version, copied, await pointAlias(store, t, version, req.now, false, req.signal));
}

type PromotionFailure = Extract<PromotionOutcome, { ok: false }>;

/**
 * Version N+1 made from a round: claimed (claimVersion), its files copied and checked against the
 * bytes that were evaluated, then version.json written last, where none is (If-None-Match): only
 * then does the version exist for readers and for the next listVersions, and once complete it is
 * never replaced.
 */
async function makeVersion(
  store: ConditionalObjectStore,
  req: PromoteRequest,
  roundUri: string,
  complete: VersionManifest[],
): Promise<{ ok: true; version: VersionManifest } | PromotionFailure> {
  const sizes = new Map((await store.list(roundUri)).map((o) => [o.uri.slice(roundUri.length), o.size]));
  const missing = PROMOTED_FILES.filter((f) => f.required && !sizes.has(f.name)).map((f) => f.name);
  if (missing.length)
    return { ok: false, reason: "RoundArtifactsMissing", message: `${roundUri} lacks ${missing.join(", ")}` };
  const n = Math.max(0, ...complete.map((v) => v.version)) + 1;
  const dest = versionUri(req.target, n);
  const refused = await claimVersion(store, dest, req, roundUri);
  if (refused) return { ok: false, reason: "PromotionPrefixShared", message: refused };
  const files: VersionManifest["files"] = [];
  for (const f of PROMOTED_FILES) {
    const size = sizes.get(f.name);
    if (size === undefined) continue;
    req.signal?.throwIfAborted();
    await store.copy(roundUri + f.name, dest + f.name);
    files.push({ name: f.name, size });
  }
  // What was copied is what was evaluated, or the version is never made (no version.json).
  for (const [name, want] of Object.entries(req.expectSha256 ?? {})) {
    const got = await digestOf(store, dest + name);
    if (got !== want) {
      return {
        ok: false,
        reason: "EvaluatedBytesChanged",
        message: `${roundUri}${name} has sha256 ${got ?? "(missing)"}, eval.json evaluated ${want}; it is evaluated again, not promoted`,
      };
    }
  }
  req.signal?.throwIfAborted();
  const version: VersionManifest = {
    schemaVersion: PROMOTION_SCHEMA_VERSION,
    version: n,
    round: req.round,
    run: req.run,
    sourceUri: roundUri,
    files,
    metrics: req.metrics,
    createdAt: req.now,
  };
  const manifest = JSON.stringify(version, null, 2) + "\n";
  if (await store.putIfAbsent(dest + VERSION_JSON, manifest, "application/json")) return { ok: true, version };
  const there = await readVersion(store, req.target, n);
  if (!there || there.sourceUri !== roundUri || !isSameRun(there.run, req.run))
    return {
      ok: false,
      reason: "PromotionPrefixShared",
      message: `${dest}${VERSION_JSON} was written meanwhile by another writer; runs must not share a promotion prefix`,
    };
  return { ok: true, version: there };
}

/** The outcome of pointing the alias at a version: refused when another run owns the alias. */
function pointedOutcome(
  t: PromotionTarget,
  version: VersionManifest,
  copied: boolean,
  pointed: Awaited<ReturnType<typeof pointAlias>>,
): PromotionOutcome {
  if ("refused" in pointed) return { ok: false, reason: "AliasOwnedByAnotherRun", message: pointed.refused };
  return {
    ok: true,
    pointer: pointed.pointer,
    pointerUri: aliasUri(t),
    version,
    copied,
    aliasWritten: pointed.written,
  };
}

/**
 * Points the alias at complete version N: pinned for a rollback (spec.promotion.pinVersion = N), or
 * not, where the alias converges on the newest version (controller/alias.ts decides which).
 */
export async function pointAliasAt(
  store: ObjectStore,
  t: PromotionTarget,
  versionNumber: number,
  pinned: boolean,
  now: string,
  signal?: AbortSignal,
): Promise<PromotionOutcome> {
  const version = await readVersion(store, t, versionNumber);
  if (!version) {
    const { complete } = await listVersions(store, t);
    return {
      ok: false,
      reason: "VersionNotFound",
      message: `v${versionNumber}: ${versionUri(t, versionNumber)}${VERSION_JSON} does not exist (versions: ${complete.map((v) => v.version).join(", ") || "none"})`,
    };
  }
  return pointedOutcome(t, version, false, await pointAlias(store, t, version, now, pinned, signal));
}

/** Rollback (spec.promotion.pinVersion = N): points the alias at complete version N, pinned. */
export function pinAlias(
  store: ObjectStore,
  t: PromotionTarget,
  versionNumber: number,
  now: string,
): Promise<PromotionOutcome> {
  return pointAliasAt(store, t, versionNumber, true, now);
}

/** With pinVersion cleared: the alias back on the newest complete version. */
export async function unpinAlias(
  store: ObjectStore,
  t: PromotionTarget,
  now: string,
): Promise<PromotionOutcome | undefined> {
  const { complete } = await listVersions(store, t);
  const newest = complete.at(-1);
  if (!newest) return undefined;
  return pointAliasAt(store, t, newest.version, false, now);
}

/** status.promoted from a pointer (status is an observation: rebuilt from S3 after a restart). */
export function promotedStatus(p: AliasPointer): {
  version: number;
  round: number;
  uri: string;
  promotedAt: string;
  metrics: Record<string, number>;
} {
  return { version: p.version, round: p.round, uri: p.uri, promotedAt: p.promotedAt, metrics: p.metrics };
}
