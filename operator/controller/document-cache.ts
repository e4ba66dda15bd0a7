// The reconciler's memory of round documents, persisted beside rounds/ so a restarted operator does
// not read every plan.json, verdict.json and eval.json of every run again (that was most of the
// catch-up after a restart). It is a cache, never a source of truth: an entry is the value read from
// a document at one ETag, and observe.ts uses it only while the listing shows the document under
// that ETag. A missing, unreadable or foreign-shaped file is ignored; losing it costs reads, not
// correctness. Entries are the summaries memory keeps (PlanSummary, verdict and failure records,
// compute records, skipped-sample counts, judged evaluations), never a whole eval.json.
import { z } from "zod";
import { EVAL_JSON } from "../api/eval-result.ts";
import { documentCacheUri, ROUND_FILES, type ArtifactsLocation } from "../api/round-layout.ts";
import { computeRecord, failureRecord, trainSummary, verdictRecord } from "../api/round-documents.ts";
import { roundPlan } from "../api/round-plan.ts";
import type { Logger } from "../observability/log.ts";
import { documentBody, documentCacheLimit, readDocument } from "../s3/documents.ts";
import type { ObjectStore } from "../s3/object-store.ts";
import type { RunMemory } from "./memory.ts";

/** Memory keys of encoder digests: `<round>/image_encoder.onnx#sha256`, valued by the file's ETag. */
export const DIGEST_SUFFIX = "#sha256";

const planSummary = roundPlan.pick({ run: true, round: true, newSlices: true, replay: true }).extend({
  model: roundPlan.shape.model.pick({ initCheckpoint: true }),
  data: roundPlan.shape.data.pick({ samples: true }),
});
const judged = z.object({ judged: z.literal(true), evaluatedAt: z.string() }).strict();

/**
 * Whether a cached value has the shape memory keeps for its file: a cache entry whose ETag matches
 * is used without reading the document, so a corrupted value must not get that far.
 */
const digest = z.string().regex(/^[0-9a-f]{64}$/);
const VALID: Record<string, z.ZodType> = {
  [ROUND_FILES.plan]: planSummary,
  [ROUND_FILES.verdict]: verdictRecord,
  [ROUND_FILES.compute]: computeRecord,
  [ROUND_FILES.failure]: failureRecord,
  [ROUND_FILES.summary]: trainSummary,
  [EVAL_JSON]: judged,
  [`image_encoder.onnx${DIGEST_SUFFIX}`]: digest,
  [`text_encoder.onnx${DIGEST_SUFFIX}`]: digest,
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
 * run's artifacts are dropped: a cache copied from elsewhere cannot speak for these documents. The
 * file is read with a limit that grows with the rounds listed (s3/documents.ts); one too large or
 * malformed is ignored (it costs reads) and replaced at the next write.
 */
export async function loadDocumentCache(
  mem: RunMemory,
  artifacts: ArtifactsLocation,
  rounds: number,
  log?: Logger,
): Promise<void> {
  if (mem.documentCacheRead) return;
  mem.documentCacheRead = true;
  const uri = documentCacheUri(artifacts);
  // S3 problems show in the listing that follows; the cache is optional.
  const read = await readDocument(mem.storage.objects, uri, documentCacheLimit(rounds), cacheFile).catch(() => null);
  if (read && "invalid" in read) log?.warn("round document cache not used", { uri, problem: read.invalid });
  if (!read || "invalid" in read || mem.documents.size > 0) return;
  const inside = `s3://${artifacts.bucket}/${artifacts.prefix}`;
  for (const [entryUri, etag, value] of read.value.documents) {
    const valid = VALID[entryUri.slice(entryUri.lastIndexOf("/") + 1)];
    if (entryUri.startsWith(inside) && valid?.safeParse(value).success) mem.documents.set(entryUri, { etag, value });
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
  const documents = persistable(mem);
  const rounds = new Set(documents.map(([uri]) => uri.slice(0, uri.lastIndexOf("/")))).size;
  const uri = documentCacheUri(artifacts);
  // Never larger than a reader would accept (ObjectTooLarge: the write fails and is logged).
  const body = documentBody(
    uri,
    { schemaVersion: DOCUMENT_CACHE_SCHEMA_VERSION, documents },
    documentCacheLimit(rounds),
    0,
  );
  await store.put(uri, body, "application/json");
  mem.documentsChanged = false;
  return true;
}
