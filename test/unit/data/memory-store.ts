// An in-memory SliceStore with S3's listing semantics (key order, Delimiter '/', StartAfter,
// MaxKeys counting keys and common prefixes), call counting and fault injection.
import type { FolderPage, ObjectInfo, SliceStore } from "../../../operator/s3/slice-store.ts";
import { S3Failure, classifyS3Error } from "../../../operator/s3/errors.ts";

type Op = "listFolders" | "listObjects" | "listRange" | "getText" | "exists";

export class MemoryStore implements SliceStore {
  readonly bucket = "data";
  readonly objects = new Map<string, string>();
  readonly calls: Record<Op, number> = { listFolders: 0, listObjects: 0, listRange: 0, getText: 0, exists: 0 };
  readonly pageSize: number;
  #faults: { op: Op | "*"; error: unknown; times: number }[] = [];

  constructor(pageSize = 1000) {
    this.pageSize = pageSize;
  }

  put(key: string, body: string | Buffer): void {
    this.objects.set(key, typeof body === "string" ? body : body.toString("latin1"));
  }

  delete(key: string): void {
    this.objects.delete(key);
  }

  /** The next `times` calls of `op` fail with an SDK-shaped error. */
  fail(op: Op | "*", error: { name: string; status: number; message?: string }, times = 1): void {
    this.#faults.push({
      op,
      times,
      error: Object.assign(new Error(error.message ?? error.name), {
        name: error.name,
        $metadata: { httpStatusCode: error.status },
      }),
    });
  }

  resetCalls(): void {
    for (const k of Object.keys(this.calls) as Op[]) this.calls[k] = 0;
  }

  #enter(op: Op): void {
    this.calls[op]++;
    const f = this.#faults.find((x) => (x.op === op || x.op === "*") && x.times > 0);
    if (f) {
      f.times--;
      throw new S3Failure(classifyS3Error(f.error, op), { cause: f.error });
    }
  }

  #sortedKeys(): string[] {
    return [...this.objects.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }

  async listFolders(prefix: string, startAfter: string | undefined): Promise<FolderPage> {
    this.#enter("listFolders");
    const folders: string[] = [];
    const keys: string[] = [];
    let isTruncated = false;
    for (const key of this.#sortedKeys()) {
      if (!key.startsWith(prefix)) continue;
      if (startAfter !== undefined && Buffer.compare(Buffer.from(key), Buffer.from(startAfter)) <= 0) continue;
      const slash = key.indexOf("/", prefix.length);
      const entry = slash >= 0 ? key.slice(0, slash + 1) : key;
      if (slash >= 0 && folders[folders.length - 1] === entry) continue;
      if (folders.length + keys.length === this.pageSize) {
        isTruncated = true;
        break;
      }
      (slash >= 0 ? folders : keys).push(entry);
    }
    return { folders, keys, isTruncated };
  }

  async listObjects(prefix: string): Promise<ObjectInfo[]> {
    this.#enter("listObjects");
    return this.#sortedKeys()
      .filter((k) => k.startsWith(prefix))
      .map((k) => ({ key: k, size: Buffer.byteLength(this.objects.get(k)!, "latin1") }));
  }

  async listRange(prefix: string, startAfter: string | undefined, endBefore: string): Promise<ObjectInfo[]> {
    const keys = this.#sortedKeys().filter(
      (k) =>
        k.startsWith(prefix) &&
        (startAfter === undefined || Buffer.compare(Buffer.from(k), Buffer.from(startAfter)) > 0) &&
        Buffer.compare(Buffer.from(k), Buffer.from(endBefore)) < 0,
    );
    // One call per page of pageSize keys, as S3 would answer.
    this.#enter("listRange");
    for (let i = this.pageSize; i < keys.length; i += this.pageSize) this.#enter("listRange");
    return keys.map((k) => ({ key: k, size: Buffer.byteLength(this.objects.get(k)!, "latin1") }));
  }

  async getText(key: string): Promise<{ text: string } | undefined> {
    this.#enter("getText");
    const v = this.objects.get(key);
    return v === undefined ? undefined : { text: v };
  }

  async exists(key: string): Promise<boolean> {
    this.#enter("exists");
    return this.objects.has(key);
  }
}

/** Writes a complete slice: shards, manifest.json, then _SUCCESS (unless complete is false). */
export function putSlice(
  store: MemoryStore,
  prefix: string,
  id: string,
  opts: { shards?: number[]; complete?: boolean; manifest?: unknown; eval?: boolean } = {},
): void {
  const shards = (opts.shards ?? [10, 20]).map((samples, i) => ({
    key: `shard-${String(i).padStart(5, "0")}.tar`,
    samples,
    bytes: 8 + i,
  }));
  for (const s of shards) store.put(`${prefix}${id}/${s.key}`, "x".repeat(s.bytes));
  if (opts.eval) store.put(`${prefix}${id}/eval/pack.tar`, "e");
  const manifest = opts.manifest ?? {
    sliceId: id,
    createdAt: "2024-01-01T00:00:00Z",
    numSamples: shards.reduce((a, s) => a + s.samples, 0),
    shards,
    ...(opts.eval ? { eval: { retrieval: "eval/" } } : {}),
  };
  store.put(`${prefix}${id}/manifest.json`, typeof manifest === "string" ? manifest : JSON.stringify(manifest));
  if (opts.complete !== false) store.put(`${prefix}${id}/_SUCCESS`, "");
}
