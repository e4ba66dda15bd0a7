// S3 adapter for a run's artifacts prefix: rounds/<NNNN>/ markers and documents.
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";

export const ROUND_FILES = {
  plan: "plan.json",
  success: "_SUCCESS",
  failure: "failed.json",
  eval: "eval.json",
  checkpoint: "checkpoint.pt",
  summary: "train_summary.json",
} as const;

export const roundPrefix = (artifactsPrefix: string, round: number) => `${artifactsPrefix}rounds/${String(round).padStart(4, "0")}/`;

/** Files present in each round folder, by round index. */
export type RoundListing = Map<number, Set<string>>;

export class RoundStore {
  readonly #s3: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  constructor(s3: S3Client, bucket: string, prefix: string) {
    this.#s3 = s3;
    this.bucket = bucket;
    this.prefix = prefix;
  }

  uri(key: string): string {
    return `s3://${this.bucket}/${key}`;
  }

  /** One pass over rounds/: which marker files each round has (partial/ checkpoints excluded). */
  async listRounds(): Promise<RoundListing> {
    const out: RoundListing = new Map();
    const base = `${this.prefix}rounds/`;
    let token: string | undefined;
    do {
      const page = await this.#s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: base, ContinuationToken: token }));
      for (const o of page.Contents ?? []) {
        const m = /^(\d{4})\/([^/]+)$/.exec(o.Key!.slice(base.length));
        if (!m) continue;
        const index = Number(m[1]);
        if (!out.has(index)) out.set(index, new Set());
        out.get(index)!.add(m[2]!);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async getJson(key: string): Promise<unknown | undefined> {
    try {
      const res = await this.#s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      return JSON.parse(await res.Body!.transformToString());
    } catch (err) {
      if ((err as { name?: string }).name === "NoSuchKey") return undefined;
      throw err;
    }
  }

  /**
   * Writes a JSON document only if the key is absent (If-None-Match: *), so two writers, or a
   * writer restarted mid-way, can never replace a plan another already acted on.
   * Returns false when the object already existed.
   */
  async putJsonIfAbsent(key: string, doc: unknown): Promise<boolean> {
    try {
      await this.#s3.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: JSON.stringify(doc, null, 2), ContentType: "application/json", IfNoneMatch: "*" }),
      );
      return true;
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 412 || status === 409) return false;
      throw err;
    }
  }
}
