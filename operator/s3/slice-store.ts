// The S3 side of slice discovery, behind a small interface so discovery can be tested against an
// in-memory store and run against AWS S3, MinIO or Ceph.
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { bounded, CALL_TIMEOUT_MS, isNotFound } from "./client.ts";

export type ObjectInfo = { key: string; size: number; etag?: string | undefined };

export type FolderPage = {
  /** Common prefixes (`<prefix><name>/`) after startAfter, in S3 key order. */
  folders: string[];
  /** Keys directly under the prefix (not in a folder), in S3 key order. */
  keys: string[];
  isTruncated: boolean;
};

export interface SliceStore {
  readonly bucket: string;
  /** One ListObjectsV2 request with Delimiter '/' and StartAfter. */
  listFolders(prefix: string, startAfter: string | undefined): Promise<FolderPage>;
  /** Every object under a prefix (paginated, no delimiter). */
  listObjects(prefix: string): Promise<ObjectInfo[]>;
  /** Every object under prefix with startAfter < key < endBefore (no delimiter), in key order. */
  listRange(prefix: string, startAfter: string | undefined, endBefore: string): Promise<ObjectInfo[]>;
  /** Object body as text, or undefined when it does not exist. */
  getText(key: string): Promise<{ text: string; etag?: string | undefined } | undefined>;
  /** Whether an object exists (HEAD). */
  exists(key: string): Promise<boolean>;
}

const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

export class S3SliceStore implements SliceStore {
  readonly bucket: string;
  readonly #client: S3Client;
  readonly #pageSize: number | undefined;
  readonly #timeoutMs: number;

  /**
   * pageSize lowers MaxKeys (tests exercise pagination with it); S3's default is 1,000.
   * timeoutMs bounds each call, retries included, so a hung connection cannot stall discovery.
   */
  constructor(client: S3Client, bucket: string, options: { pageSize?: number; timeoutMs?: number } = {}) {
    this.#client = client;
    this.bucket = bucket;
    this.#pageSize = options.pageSize;
    this.#timeoutMs = options.timeoutMs ?? CALL_TIMEOUT_MS;
  }

  #send<T>(operation: string, call: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    return bounded(operation, call, this.#timeoutMs);
  }

  async listFolders(prefix: string, startAfter: string | undefined): Promise<FolderPage> {
    const command = new ListObjectsV2Command({
      Bucket: this.bucket,
      Prefix: prefix,
      Delimiter: "/",
      ...(startAfter ? { StartAfter: startAfter } : {}),
      ...(this.#pageSize ? { MaxKeys: this.#pageSize } : {}),
    });
    const out = await this.#send(`list s3://${this.bucket}/${prefix}`, (abortSignal) =>
      this.#client.send(command, { abortSignal }),
    );
    return {
      folders: (out.CommonPrefixes ?? []).flatMap((p) => (p.Prefix ? [p.Prefix] : [])),
      keys: (out.Contents ?? []).flatMap((o) => (o.Key ? [o.Key] : [])),
      isTruncated: out.IsTruncated === true,
    };
  }

  async listObjects(prefix: string): Promise<ObjectInfo[]> {
    const objects: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      const command = new ListObjectsV2Command({
        Bucket: this.bucket,
        Prefix: prefix,
        ...(token ? { ContinuationToken: token } : {}),
        ...(this.#pageSize ? { MaxKeys: this.#pageSize } : {}),
      });
      const out = await this.#send(`list s3://${this.bucket}/${prefix}`, (abortSignal) =>
        this.#client.send(command, { abortSignal }),
      );
      for (const o of out.Contents ?? []) if (o.Key) objects.push({ key: o.Key, size: o.Size ?? 0, etag: o.ETag });
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
    return objects;
  }

  async listRange(prefix: string, startAfter: string | undefined, endBefore: string): Promise<ObjectInfo[]> {
    const objects: ObjectInfo[] = [];
    let token: string | undefined;
    for (;;) {
      const command = new ListObjectsV2Command({
        Bucket: this.bucket,
        Prefix: prefix,
        ...(token ? { ContinuationToken: token } : startAfter ? { StartAfter: startAfter } : {}),
        ...(this.#pageSize ? { MaxKeys: this.#pageSize } : {}),
      });
      const out = await this.#send(`list s3://${this.bucket}/${prefix}`, (abortSignal) =>
        this.#client.send(command, { abortSignal }),
      );
      for (const o of out.Contents ?? []) {
        if (!o.Key) continue;
        if (Buffer.compare(Buffer.from(o.Key), Buffer.from(endBefore)) >= 0) return objects;
        objects.push({ key: o.Key, size: o.Size ?? 0, etag: o.ETag });
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
      if (!token) return objects;
    }
  }

  async getText(key: string): Promise<{ text: string; etag?: string | undefined } | undefined> {
    const operation = `get s3://${this.bucket}/${key}`;
    try {
      return await this.#send(operation, async (abortSignal) => {
        const out = await this.#client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal });
        if ((out.ContentLength ?? 0) > MAX_MANIFEST_BYTES) {
          out.Body?.transformToWebStream()
            .cancel()
            .catch(() => {});
          const message = `object is ${out.ContentLength} bytes, more than ${MAX_MANIFEST_BYTES}`;
          throw Object.assign(new Error(message), { name: "EntityTooLarge", $metadata: { httpStatusCode: 400 } });
        }
        // A manifest is small: its body counts against the same deadline.
        return { text: (await out.Body?.transformToString("utf-8")) ?? "", etag: out.ETag };
      });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async exists(key: string): Promise<boolean> {
    const command = new HeadObjectCommand({ Bucket: this.bucket, Key: key });
    try {
      await this.#send(`head s3://${this.bucket}/${key}`, (abortSignal) => this.#client.send(command, { abortSignal }));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }
}
