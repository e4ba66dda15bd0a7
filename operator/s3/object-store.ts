// Whole-object reads, writes and server-side copies by s3:// URI, for evaluation (packs, ONNX,
// eval.json) and promotion (versions, alias pointer). Behind a small interface so both run against
// an in-memory store in unit tests and AWS S3 / MinIO / Ceph for real.
import { CopyObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { parseS3Uri } from "./client.ts";
import { classifyS3Error, S3Failure } from "./errors.ts";

export type StoredObject = { uri: string; size: number };

export interface ObjectStore {
  /** Object bytes, or undefined when it does not exist. */
  get(uri: string): Promise<Uint8Array | undefined>;
  put(uri: string, body: Uint8Array | string, contentType?: string): Promise<void>;
  /** Server-side copy; fails when the source does not exist. */
  copy(from: string, to: string): Promise<void>;
  /** Every object under a prefix URI (recursive), in key order. */
  list(prefix: string): Promise<StoredObject[]>;
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === "NoSuchKey" || e?.name === "NotFound" || (e?.$metadata?.httpStatusCode === 404 && e?.name !== "NoSuchBucket");
}

const fail = (err: unknown, op: string) => new S3Failure(classifyS3Error(err, op), { cause: err });

export class S3ObjectStore implements ObjectStore {
  readonly #client: S3Client;
  constructor(client: S3Client) {
    this.#client = client;
  }

  async get(uri: string): Promise<Uint8Array | undefined> {
    const { bucket, key } = parseS3Uri(uri);
    try {
      const out = await this.#client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return (await out.Body?.transformToByteArray()) ?? new Uint8Array();
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw fail(err, `get ${uri}`);
    }
  }

  async put(uri: string, body: Uint8Array | string, contentType?: string): Promise<void> {
    const { bucket, key } = parseS3Uri(uri);
    try {
      await this.#client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ...(contentType ? { ContentType: contentType } : {}) }));
    } catch (err) {
      throw fail(err, `put ${uri}`);
    }
  }

  async copy(from: string, to: string): Promise<void> {
    const src = parseS3Uri(from);
    const dst = parseS3Uri(to);
    try {
      // CopySource is "bucket/key" with the key URL-encoded (slashes kept).
      const source = `${src.bucket}/${src.key.split("/").map(encodeURIComponent).join("/")}`;
      await this.#client.send(new CopyObjectCommand({ Bucket: dst.bucket, Key: dst.key, CopySource: source }));
    } catch (err) {
      throw fail(err, `copy ${from} to ${to}`);
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const { bucket, key } = parseS3Uri(prefix);
    const out: StoredObject[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.#client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: key, ...(token ? { ContinuationToken: token } : {}) }));
        for (const o of page.Contents ?? []) if (o.Key) out.push({ uri: `s3://${bucket}/${o.Key}`, size: o.Size ?? 0 });
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (err) {
      throw fail(err, `list ${prefix}`);
    }
    return out;
  }
}

/** An in-memory ObjectStore (unit tests, benchmarks); `failOn` injects a failure before a write. */
export class MemoryObjectStore implements ObjectStore {
  readonly objects = new Map<string, Uint8Array>();
  failOn: ((op: "put" | "copy", uri: string) => boolean) | undefined;

  async get(uri: string): Promise<Uint8Array | undefined> {
    return this.objects.get(uri);
  }
  async put(uri: string, body: Uint8Array | string): Promise<void> {
    if (this.failOn?.("put", uri)) throw new Error(`injected failure: put ${uri}`);
    this.objects.set(uri, typeof body === "string" ? new TextEncoder().encode(body) : body.slice());
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
      .map(([uri, b]) => ({ uri, size: b.length }));
  }
}
