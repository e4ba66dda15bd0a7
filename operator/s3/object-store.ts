// Whole-object reads, writes and server-side copies by s3:// URI, for evaluation (packs, ONNX,
// eval.json) and promotion (versions, alias pointer). Behind a small interface so both run against
// an in-memory store in unit tests and AWS S3 / MinIO / Ceph for real.
import { createHash } from "node:crypto";
import {
  CopyObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import type { Readable } from "node:stream";
import { bounded, CALL_TIMEOUT_MS, isNotFound, parseS3Uri } from "./client.ts";
import { ObjectTooLarge } from "./errors.ts";

export type StoredObject = { uri: string; size: number; etag?: string | undefined };

/**
 * A whole-object read of a document: at most maxBytes (an object larger fails with ObjectTooLarge,
 * its body never read), and the body counts against the call's deadline, so an endpoint that
 * trickles bytes fails the read instead of holding it.
 */
export type ReadLimit = { maxBytes: number };

export interface ObjectStore {
  /** Object bytes, or undefined when it does not exist. With a limit: see ReadLimit. */
  get(uri: string, limit?: ReadLimit): Promise<Uint8Array | undefined>;
  put(uri: string, body: Uint8Array | string, contentType?: string): Promise<void>;
  /** Server-side copy; fails when the source does not exist. */
  copy(from: string, to: string): Promise<void>;
  /** Every object under a prefix URI (recursive), in key order. */
  list(prefix: string): Promise<StoredObject[]>;
}

/** An ObjectStore that can also create an object only where none exists (If-None-Match: *). */
export interface ConditionalObjectStore extends ObjectStore {
  /** Returns false when the object already existed (nothing written). */
  putIfAbsent(uri: string, body: Uint8Array | string, contentType?: string): Promise<boolean>;
}

/** Every call bounded by s3/client.ts's timeout policy, every failure classified as an S3Failure. */
export class S3ObjectStore implements ConditionalObjectStore {
  readonly #client: S3Client;
  readonly #timeoutMs: number;
  constructor(client: S3Client, options: { timeoutMs?: number } = {}) {
    this.#client = client;
    this.#timeoutMs = options.timeoutMs ?? CALL_TIMEOUT_MS;
  }

  async get(uri: string, limit?: ReadLimit): Promise<Uint8Array | undefined> {
    const { bucket, key } = parseS3Uri(uri);
    const command = new GetObjectCommand({ Bucket: bucket, Key: key });
    try {
      if (limit) {
        // A document: its body is read inside the same deadline, and never past maxBytes.
        return await bounded(
          `get ${uri}`,
          async (abortSignal) => {
            const out = await this.#client.send(command, { abortSignal });
            return readCapped(uri, out.Body as Readable | undefined, out.ContentLength, limit.maxBytes, abortSignal);
          },
          this.#timeoutMs,
        );
      }
      // Model files and packs: as large as they are, streaming while bytes arrive (SOCKET_IDLE_MS).
      const out = await bounded(
        `get ${uri}`,
        (abortSignal) => this.#client.send(command, { abortSignal }),
        this.#timeoutMs,
      );
      return (await out.Body?.transformToByteArray()) ?? new Uint8Array();
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async put(uri: string, body: Uint8Array | string, contentType?: string): Promise<void> {
    const { bucket, key } = parseS3Uri(uri);
    const command = new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: body,
      ...(contentType ? { ContentType: contentType } : {}),
    });
    await bounded(`put ${uri}`, (abortSignal) => this.#client.send(command, { abortSignal }), this.#timeoutMs);
  }

  async putIfAbsent(uri: string, body: Uint8Array | string, contentType?: string): Promise<boolean> {
    const { bucket, key } = parseS3Uri(uri);
    const command = new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: body,
      IfNoneMatch: "*",
      ...(contentType ? { ContentType: contentType } : {}),
    });
    try {
      await bounded(`put ${uri}`, (abortSignal) => this.#client.send(command, { abortSignal }), this.#timeoutMs);
      return true;
    } catch (err) {
      const status = (err as { problem?: { httpStatus?: number } }).problem?.httpStatus;
      if (status === 412 || status === 409) return false;
      throw err;
    }
  }

  async copy(from: string, to: string): Promise<void> {
    const src = parseS3Uri(from);
    const dst = parseS3Uri(to);
    // CopySource is "bucket/key" with the key URL-encoded (slashes kept).
    const source = `${src.bucket}/${src.key.split("/").map(encodeURIComponent).join("/")}`;
    const command = new CopyObjectCommand({ Bucket: dst.bucket, Key: dst.key, CopySource: source });
    // A server-side copy of a large checkpoint answers only when done: allow it longer.
    await bounded(
      `copy ${from} to ${to}`,
      (abortSignal) => this.#client.send(command, { abortSignal }),
      this.#timeoutMs * 20,
    );
  }

  /**
   * sha256 (hex) of an object's bytes, streamed (an encoder can be larger than the operator's memory
   * limit), or undefined when it does not exist. Promotion uses it to check that a version holds the
   * bytes that were evaluated. Bounded like a copy: the whole body counts.
   */
  async sha256(uri: string): Promise<string | undefined> {
    const { bucket, key } = parseS3Uri(uri);
    try {
      return await bounded(
        `sha256 ${uri}`,
        async (abortSignal) => {
          const out = await this.#client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal });
          const hash = createHash("sha256");
          for await (const chunk of (out.Body ?? []) as AsyncIterable<Uint8Array>) hash.update(chunk);
          return hash.digest("hex");
        },
        this.#timeoutMs * 20,
      );
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const { bucket, key } = parseS3Uri(prefix);
    const out: StoredObject[] = [];
    let token: string | undefined;
    do {
      const command = new ListObjectsV2Command({
        Bucket: bucket,
        Prefix: key,
        ...(token ? { ContinuationToken: token } : {}),
      });
      const page = await bounded(
        `list ${prefix}`,
        (abortSignal) => this.#client.send(command, { abortSignal }),
        this.#timeoutMs,
      );
      for (const o of page.Contents ?? [])
        if (o.Key) out.push({ uri: `s3://${bucket}/${o.Key}`, size: o.Size ?? 0, etag: o.ETag });
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }
}

/** The body, counted as it arrives: past maxBytes (declared or received) or on abort it is dropped. */
async function readCapped(
  uri: string,
  body: Readable | undefined,
  declared: number | undefined,
  maxBytes: number,
  signal: AbortSignal,
): Promise<Uint8Array> {
  if (!body) return new Uint8Array();
  if (declared !== undefined && declared > maxBytes) {
    body.destroy();
    throw new ObjectTooLarge(uri, declared, maxBytes);
  }
  const onAbort = () => body.destroy(signal.reason as Error);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) {
        body.destroy();
        throw new ObjectTooLarge(uri, Infinity, maxBytes);
      }
      chunks.push(chunk as Buffer);
    }
    signal.throwIfAborted();
    return new Uint8Array(Buffer.concat(chunks, size));
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
}

/** An in-memory ObjectStore (unit tests, benchmarks); `failOn` injects a failure before a write. */
export class MemoryObjectStore implements ConditionalObjectStore {
  readonly objects = new Map<string, Uint8Array>();
  failOn: ((op: "put" | "copy", uri: string) => boolean) | undefined;

  async get(uri: string, limit?: ReadLimit): Promise<Uint8Array | undefined> {
    const body = this.objects.get(uri);
    if (body && limit && body.length > limit.maxBytes) throw new ObjectTooLarge(uri, body.length, limit.maxBytes);
    return body;
  }
  async put(uri: string, body: Uint8Array | string): Promise<void> {
    if (this.failOn?.("put", uri)) throw new Error(`injected failure: put ${uri}`);
    this.objects.set(uri, typeof body === "string" ? new TextEncoder().encode(body) : body.slice());
  }
  async putIfAbsent(uri: string, body: Uint8Array | string): Promise<boolean> {
    if (this.objects.has(uri)) return false;
    await this.put(uri, body);
    return true;
  }
  async copy(from: string, to: string): Promise<void> {
    if (this.failOn?.("copy", to)) throw new Error(`injected failure: copy to ${to}`);
    const body = this.objects.get(from);
    if (!body) throw new Error(`copy: ${from} does not exist`);
    this.objects.set(to, body.slice());
  }
  async list(prefix: string): Promise<StoredObject[]> {
    return [...this.objects.entries()]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([uri, b]) => ({ uri, size: b.length, etag: `"${createHash("md5").update(b).digest("hex")}"` }));
  }
}
