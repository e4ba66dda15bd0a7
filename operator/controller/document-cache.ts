// The reconciler's memory of round documents, persisted beside rounds/ so a restarted operator does
// not read every plan.json, verdict.json and eval.json of every run again (that was most of the
// catch-up after a restart). It is a cache, never a source of truth: an entry is the value read from
// a document at one ETag, and observe.ts uses it only while the listing shows the document under
// that ETag. A missing, unreadable or foreign-shaped file is ignored; losing it costs reads, not
// correctness. Entries are the summaries memory keeps (PlanSummary, verdict and failure records,
// compute records, judged evaluations), never a whole eval.json.
import { z } from "zod";
import { EVAL_JSON } from "../api/eval-result.ts";
import { documentCacheUri, ROUND_FILES, type ArtifactsLocation } from "../api/round-layout.ts";
import { roundPlan } from "../api/round-plan.ts";
import type { ObjectStore } from "../s3/object-store.ts";
import type { RunMemory } from "./memory.ts";
import type { ComputeRecord, VerdictRecord } from "./types.ts";

/** What observe.ts accepts as verdict.json (and the cache as its entry). */
export const isVerdictRecord = (v: unknown): v is VerdictRecord =>
  typeof (v as VerdictRecord | undefined)?.evaluatedAt === "string" &&
  typeof (v as VerdictRecord).verdict?.passed === "boolean";

/** What observe.ts accepts as compute.json (and the cache as its entry). */
export const isComputeRecord = (c: unknown): c is ComputeRecord =>
  typeof (c as ComputeRecord | undefined)?.gpuSeconds === "number" && (c as ComputeRecord).gpuSeconds >= 0;

/** Memory keys of encoder digests: `<round>/image_encoder.onnx#sha256`, valued by the file's ETag. */
export const DIGEST_SUFFIX = "#sha256";
const isDigest = (v: unknown) => typeof v === "string" && /^[0-9a-f]{64}$/.test(v);

const planSummary = roundPlan.pick({ run: true, round: true, newSlices: true, replay: true }).extend({
  model: roundPlan.shape.model.pick({ initCheckpoint: true }),
  data: roundPlan.shape.data.pick({ samples: true }),
});
const judged = z.object({ judged: z.literal(true), evaluatedAt: z.string() }).strict();

/**
 * Whether a cached value has the shape memory keeps for its file: a cache entry whose ETag matches
 * is used without reading the document, so a corrupted value must not get that far.
 */
const VALID: Record<string, (value: unknown) => boolean> = {
  [ROUND_FILES.plan]: (v) => planSummary.safeParse(v).success,
  [ROUND_FILES.verdict]: isVerdictRecord,
  [ROUND_FILES.compute]: isComputeRecord,
  [ROUND_FILES.failure]: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
  [EVAL_JSON]: (v) => judged.safeParse(v).success,
  [`image_encoder.onnx${DIGEST_SUFFIX}`]: isDigest,
  [`text_encoder.onnx${DIGEST_SUFFIX}`]: isDigest,
};

export const DOCUMENT_CACHE_SCHEMA_VERSION = 1;

const cacheFile = z.object({
  schemaVersion: z.literal(DOCUMENT_CACHE_SCHEMA_VERSION),
  documents: z.array(z.tuple([z.string(), z.string(), z.unknown()])),
});

type Entry = [uri: string, etag: string, value: unknown];

/** Entries worth persisting: all but whole (not yet judged) evaluations, which are large and short-lived. */
function persistable(mem: RunMemory): Entry[] {
  return [...mem.documents]
    .filter(([uri, d]) => !uri.endsWith(`/${EVAL_JSON}`) || (d.value as { judged?: boolean }).judged === true)
    .map(([uri, d]) => [uri, d.etag, d.value]);
}

/**
 * Seeds an empty memory from the persisted cache (one GET), once per memory. Entries outside this
 * run's artifacts are dropped: a cache copied from elsewhere cannot speak for these documents.
 */
export async function loadDocumentCache(mem: RunMemory, artifacts: ArtifactsLocation): Promise<void> {
  if (mem.documentCacheRead) return;
  mem.documentCacheRead = true;
  let raw: Uint8Array | undefined;
  try {
    raw = await mem.storage.objects.get(documentCacheUri(artifacts));
  } catch {
    return; // S3 problems show in the listing that follows; the cache is optional
  }
  if (!raw || mem.documents.size > 0) return;
  let parsed: z.infer<typeof cacheFile> | undefined;
  try {
    parsed = cacheFile.safeParse(JSON.parse(new TextDecoder().decode(raw))).data;
  } catch {
    return;
  }
  const inside = `s3://${artifacts.bucket}/${artifacts.prefix}`;
  for (const [uri, etag, value] of parsed?.documents ?? []) {
    const valid = VALID[uri.slice(uri.lastIndexOf("/") + 1)];
    if (uri.startsWith(inside) && valid?.(value)) mem.documents.set(uri, { etag, value });
  }
  mem.documentsChanged = false;
}

/**
 * Writes the cache when the documents memory holds changed since it was last read or written, so a
 * steady state writes nothing. A failed write is left for the next reconcile.
 */
export async function saveDocumentCache(
  mem: RunMemory,
  artifacts: ArtifactsLocation,
  store: ObjectStore,
): Promise<boolean> {
  if (!mem.documentsChanged) return false;
  const body = JSON.stringify({ schemaVersion: DOCUMENT_CACHE_SCHEMA_VERSION, documents: persistable(mem) });
  await store.put(documentCacheUri(artifacts), body, "application/json");
  mem.documentsChanged = false;
  return true;
}
