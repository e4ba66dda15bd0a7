// Documents read from S3 (plans, round records, eval.json, promotion pointers, the operator's
// cache): each kind has a size it may not exceed, is read whole inside one deadline, and is parsed
// with its zod schema at this boundary. What a run's author puts in their own bucket is input: a
// document too large, not JSON or of the wrong shape comes back as `{ invalid }` naming the key,
// for that run's status, never as an exception that retries forever or a value trusted blindly.
import type { z } from "zod";
import { formatIssues } from "../api/common.ts";
import { ObjectTooLarge } from "./errors.ts";
import type { ObjectStore } from "./object-store.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * The most bytes a document of each kind may have. plan.json lists every shard a round reads (a
 * cumulative round of TiC-DataComp large: about 130,000 shard references, 10 MiB); eval.json holds
 * the TiC matrix (rounds x slices scores); the rest are a few KiB. The operator never writes a
 * document over its limit (RoundStore refuses).
 */
export const DOCUMENT_LIMITS = {
  plan: 16 * MiB,
  eval: 16 * MiB,
  evalRequest: 4 * MiB,
  verdict: 1 * MiB,
  failure: 64 * KiB,
  compute: 64 * KiB,
  progress: 64 * KiB,
  alias: 64 * KiB,
  version: 1 * MiB,
  /** The trainer's train_summary.json (its loss curve is bounded by the trainer's loss_curve_points). */
  summary: 4 * MiB,
  /** A slice's manifest.json (lists its shards; as discovery reads it). */
  sliceManifest: 64 * MiB,
  /** An eval pack's manifest or a model.json. */
  small: 1 * MiB,
} as const;

/**
 * operator-cache.json keeps a few summaries per round (plan summary, verdict, failure, compute): its
 * limit grows with the rounds listed, so a long run keeps its cache and a short one cannot be made
 * to read a large file.
 */
export const documentCacheLimit = (rounds: number) => 1 * MiB + rounds * 64 * KiB;

/** A document as read: absent (undefined), its parsed value, or why it cannot be used (key not included). */
export type DocumentRead<T> = { value: T } | { invalid: string } | undefined;

/**
 * Reads `uri` (at most maxBytes, inside the store's deadline) and parses it as JSON with `schema`.
 * `expect`: the size a listing showed, when known. The read then stops at a little more than that
 * (an endpoint cannot send more than it listed), and only a document that really grew since is
 * read again up to maxBytes, so a caller can reserve what it expects rather than the limit.
 */
export async function readDocument<T>(
  store: Pick<ObjectStore, "get">,
  uri: string,
  maxBytes: number,
  schema: z.ZodType<T>,
  expect?: { bytes: number; reserve?: (bytes: number) => Promise<void> },
): Promise<DocumentRead<T>> {
  let raw: Uint8Array | undefined;
  const first = expect ? expectedRead(expect.bytes, maxBytes) : maxBytes;
  try {
    raw = await store.get(uri, { maxBytes: first });
  } catch (err) {
    if (!(err instanceof ObjectTooLarge)) throw err;
    if (first === maxBytes) return { invalid: tooLarge(err.size, maxBytes) };
    await expect?.reserve?.(maxBytes);
    return readDocument(store, uri, maxBytes, schema);
  }
  if (raw === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(raw));
  } catch (err) {
    return { invalid: `not JSON: ${(err as Error).message}` };
  }
  const parsed = schema.safeParse(json);
  return parsed.success ? { value: parsed.data } : { invalid: formatIssues(parsed.error, { limit: 5 }) };
}

/** What to read of a document listed at `bytes`: that and some slack, within the limit of its kind. */
export const expectedRead = (bytes: number, maxBytes: number) => Math.min(maxBytes, Math.max(bytes, 64 * KiB));

const tooLarge = (size: number, maxBytes: number) =>
  `${size === Infinity ? "" : `${size} bytes: `}more than the ${maxBytes} bytes a document of its kind may have`;

/** The JSON text of a document the operator writes, refused (ObjectTooLarge) when a reader would refuse it. */
export function documentBody(uri: string, doc: unknown, maxBytes: number, indent = 2): string {
  const body = JSON.stringify(doc, null, indent);
  const size = Buffer.byteLength(body);
  if (size > maxBytes) throw new ObjectTooLarge(uri, size, maxBytes);
  return body;
}
