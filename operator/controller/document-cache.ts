// The reconciler's memory of round documents, persisted beside rounds/ so a restarted operator does
// not read every plan.json, verdict.json and eval.json of every run again (that was most of the
// catch-up after a restart). It is a cache, never a source of truth: an entry is the value read from
// a document at one ETag, and observe.ts uses it only while the listing shows the document under
// that ETag. A missing, unreadable or foreign-shaped file is ignored; losing it costs reads, not
// correctness. Entries are the summaries memory keeps (PlanSummary, verdict and failure records,
// compute records, judged evaluations), never a whole eval.json.
import { z } from "zod";
import { EVAL_JSON } from "../api/eval-result.ts";
import { documentCacheUri, type ArtifactsLocation } from "../api/round-layout.ts";
import type { ObjectStore } from "../s3/object-store.ts";
import type { RunMemory } from "./memory.ts";

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

const fingerprint = (entries: Entry[]) => entries.map(([uri, etag]) => `${uri} ${etag}`).join("\n");

/**
 * Seeds an empty memory from the persisted cache (one GET), once per memory. Entries outside this
 * run's artifacts are dropped: a cache copied from elsewhere cannot speak for these documents.
 */
export async function loadDocumentCache(mem: RunMemory, artifacts: ArtifactsLocation): Promise<void> {
  if (mem.documentCache !== undefined) return;
  mem.documentCache = "";
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
    if (uri.startsWith(inside) && value !== null && typeof value === "object") mem.documents.set(uri, { etag, value });
  }
  mem.documentCache = fingerprint(persistable(mem));
}

/**
 * Writes the cache when the documents memory holds differ from what was last written or loaded, so
 * a steady state writes nothing. A failed write is left for the next reconcile.
 */
export async function saveDocumentCache(
  mem: RunMemory,
  artifacts: ArtifactsLocation,
  store: ObjectStore,
): Promise<boolean> {
  const entries = persistable(mem);
  const print = fingerprint(entries);
  if (print === mem.documentCache) return false;
  const body = JSON.stringify({ schemaVersion: DOCUMENT_CACHE_SCHEMA_VERSION, documents: entries });
  await store.put(documentCacheUri(artifacts), body, "application/json");
  mem.documentCache = print;
  return true;
}
