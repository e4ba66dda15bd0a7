// The only module that builds S3 clients, and the one timeout policy of every S3 call. The
// connection (endpoint, region, addressing style, keys) is api/s3-connection.ts's S3Connection.
import { createHash } from "node:crypto";
import { S3Client } from "@aws-sdk/client-s3";
import type { S3Connection } from "../api/s3-connection.ts";
import { s3RequestsTotal } from "../observability/metrics.ts";
import { classifyS3Error, S3Failure } from "./errors.ts";

/**
 * An endpoint that accepts connections and never answers must not hang a worker: connecting is
 * bounded, and a socket silent for SOCKET_IDLE_MS fails the attempt (bodies keep streaming as
 * long as bytes arrive, so large ONNX files still download).
 */
export const CONNECT_TIMEOUT_MS = 10_000;
export const SOCKET_IDLE_MS = 30_000;
/** Default deadline of one call until its response headers, retries included. */
export const CALL_TIMEOUT_MS = 30_000;

export function createS3Client(conn: S3Connection): S3Client {
  const client = new S3Client({
    region: conn.region,
    ...(conn.endpoint ? { endpoint: conn.endpoint } : {}),
    forcePathStyle: conn.addressingStyle === "Path",
    ...(conn.credentials ? { credentials: conn.credentials } : {}),
    maxAttempts: 3,
    requestHandler: {
      connectionTimeout: CONNECT_TIMEOUT_MS,
      requestTimeout: SOCKET_IDLE_MS,
      throwOnRequestTimeout: true,
    },
  });
  // The deserialize step runs once per attempt (inside the retry middleware): every HTTP request counts.
  client.middlewareStack.add(
    (next, context) => (args) => {
      s3RequestsTotal.inc({ operation: (context.commandName ?? "unknown").replace(/Command$/, "") });
      return next(args);
    },
    { step: "deserialize", name: "ticclipCountRequests" },
  );
  return client;
}

/** Distinct connections remembered; past it the oldest is dropped (runs still holding it keep it). */
export const POOLED_CONNECTIONS = 64;

/**
 * One S3 client, so one keep-alive socket pool and one credential provider, per connection (every
 * field of it, so a new setting cannot be left out of the key): a thousand runs reading with the
 * keys of one Secret share a client instead of each holding its own sockets. A rotated key is a
 * new connection and gets a new client.
 */
export function s3ClientPool(
  create: (conn: S3Connection) => S3Client = createS3Client,
): (conn: S3Connection) => S3Client {
  const clients = new Map<string, S3Client>();
  return (conn) => {
    const key = createHash("sha256").update(canonicalJson(conn)).digest("hex");
    let client = clients.get(key);
    if (!client) {
      client = create(conn);
      clients.set(key, client);
      if (clients.size > POOLED_CONNECTIONS) clients.delete(clients.keys().next().value!);
    }
    return client;
  };
}

/** JSON with keys sorted at every level and undefined members dropped: equal connections, equal text. */
function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : 1));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

/** Splits s3://bucket/key into its parts. */
export function parseS3Uri(uri: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/(.*)$/.exec(uri);
  if (!m) throw new Error(`not an s3:// URI: ${uri}`);
  return { bucket: m[1]!, key: m[2]! };
}

/** A missing object (not a missing bucket), raw from the SDK or wrapped in an S3Failure. */
export function isNotFound(err: unknown): boolean {
  const raw = err instanceof S3Failure ? err.cause : err;
  const e = raw as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  return (
    e?.name === "NoSuchKey" ||
    e?.name === "NotFound" ||
    (e?.$metadata?.httpStatusCode === 404 && e?.name !== "NoSuchBucket")
  );
}

/**
 * Runs one SDK call with a deadline until its response arrives (the SDK's retries included) and
 * turns any failure into an S3Failure with the one classification of s3/errors.ts:
 * `await bounded("list s3://b/p", (abortSignal) => client.send(new ListObjectsV2Command(...), { abortSignal }))`.
 */
export async function bounded<T>(
  operation: string,
  call: (signal: AbortSignal) => Promise<T>,
  timeoutMs = CALL_TIMEOUT_MS,
): Promise<T> {
  const abort = new AbortController();
  const timer = setTimeout(
    () => abort.abort(Object.assign(new Error(`no answer in ${timeoutMs} ms`), { name: "TimeoutError" })),
    timeoutMs,
  );
  try {
    return await call(abort.signal);
  } catch (err) {
    if (err instanceof S3Failure) throw err;
    // Our own deadline fired: whatever the SDK made of the abort, it is a timeout.
    const cause = abort.signal.aborted ? abort.signal.reason : err;
    throw new S3Failure(classifyS3Error(cause, operation), { cause });
  } finally {
    clearTimeout(timer);
  }
}

/** fn over items with at most `limit` calls in flight (the S3 reads of one pass); results in item order. */
export async function inPool<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
