// Per-run memory of the Reconciler: a cache of the world, never its source of truth. Losing it on
// restart costs one full S3 listing, never a duplicate Job or a skipped slice.
import { createHash } from "node:crypto";
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import { parseDuration } from "../api/common.ts";
import { SliceDiscovery, type DiscoveryResult } from "../data/discovery.ts";
import type { VersionManifest } from "../api/promotion.ts";
import type { AliasRead, VersionCache } from "../promotion/versions.ts";
import type { S3Connection } from "../api/s3-connection.ts";
import type { RoundListing } from "../s3/round-store.ts";
import type { Storage, StorageFactory } from "./ports.ts";
import type { GitState, ObservedProgress } from "./types.ts";

export type RunMemory = {
  connectionKey: string;
  storage: Storage;
  sourceKey: string;
  discovery: SliceDiscovery;
  lastDiscovery?: DiscoveryResult | undefined;
  nextPollAt: number;
  /**
   * Round documents (plan.json, failed.json, eval.json) by s3:// URI with the ETag they were read
   * at. An entry is trusted only while the listing shows the same object under the same ETag, so a
   * changed artifacts prefix, a deleted round folder or a rewritten file is read again.
   */
  documents: Map<string, { etag: string; value: unknown }>;
  /**
   * The last listing of the artifacts prefix, and what it was read under (see observe.ts's
   * listingKey). Reused until a poll is due, the key changes or this process writes to S3 (act
   * drops it), so a steady-state reconcile reads nothing from S3.
   */
  listing?: { key: string; rounds: RoundListing } | undefined;
  /**
   * The promotion prefix's complete versions and alias pointer. Only this process writes there, so
   * they are reused under the same key until act writes, for at most PROMOTION_TTL_MS (someone
   * else moving the alias is seen within that time).
   */
  promotion?: { key: string; readAt: number; complete: VersionManifest[]; alias: AliasRead } | undefined;
  /** Whether the persisted document cache was read into `documents` (document-cache.ts). */
  documentCacheRead?: boolean | undefined;
  /** Whether `documents` gained or lost an entry since the document cache was last read or written. */
  documentsChanged?: boolean | undefined;
  /** Complete promoted versions (immutable), read once. */
  versions: VersionCache;
  /** Bumped by every notification, so a poll in progress does not swallow one. */
  notifications: number;
  /** New slices of plans written in this pass (slice-to-Job latency). */
  plannedSlices: Map<number, string[]>;
  /** When discovery first saw each slice valid (ms), for the slice-to-Job latency metric. */
  sliceSeenAt: Map<string, number>;
  /** The last sync of spec.promotion.git (controller/git-sync.ts). */
  git?: GitState | undefined;
  /** progress.json of the training round as last read, with its ETag and when (observe.ts, observeProgress). */
  progress?: (ObservedProgress & { etag: string | undefined; readAt: number }) | undefined;
};

const hash = (v: unknown) => createHash("sha256").update(JSON.stringify(v)).digest("hex");

/** Operator-wide settings of slice discovery (flags). */
export type DiscoverySettings = { unreadableAfterMs?: number | undefined; now?: (() => number) | undefined };

/** The run's memory, rebuilt when its source or S3 connection changed. */
export function memoryFor(
  previous: RunMemory | undefined,
  spec: ContinualClipRunSpec,
  connection: S3Connection,
  storageFor: StorageFactory,
  settings: DiscoverySettings = {},
): RunMemory {
  const src = spec.source;
  const sourceKey = `${src.s3.bucket}\n${src.s3.prefix}\n${src.startAfter ?? ""}\n${src.pollInterval}`;
  const connectionKey = hash(connection);
  if (previous && previous.sourceKey === sourceKey && previous.connectionKey === connectionKey) return previous;
  const storage = storageFor(connection);
  return {
    connectionKey,
    storage,
    sourceKey,
    discovery: new SliceDiscovery({
      store: storage.slices(src.s3.bucket),
      prefix: src.s3.prefix,
      startAfter: src.startAfter,
      pollIntervalMs: parseDuration(src.pollInterval),
      unreadableAfterMs: settings.unreadableAfterMs,
      ...(settings.now ? { now: settings.now } : {}),
    }),
    nextPollAt: 0,
    documents: previous?.documents ?? new Map(),
    documentCacheRead: previous?.documentCacheRead,
    documentsChanged: previous?.documentsChanged,
    plannedSlices: new Map(),
    versions: previous?.versions ?? new Map(),
    notifications: 0,
    sliceSeenAt: new Map(),
    git: previous?.git,
  };
}
