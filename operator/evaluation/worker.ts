// In-process evaluation off the event loop. The worker thread runs scoreRound with an ObjectStore
// that forwards every call to the caller's store on the calling thread: S3 clients, credentials and
// in-memory test stores stay where they are, and only request data and object bytes cross over.
import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import { ObjectTooLarge } from "../s3/errors.ts";
import type { ObjectStore, ReadLimit, StoredObject } from "../s3/object-store.ts";
import { ExecutionProviderUnavailable } from "./runtime.ts";

type StoreCall = { id: number; op: "get" | "put" | "copy" | "list"; args: unknown[] };
type StoreReply =
  | { id: number; ok: true; value: unknown }
  | { id: number; ok: false; message: string; tooLarge?: { uri: string; size: number; maxBytes: number } };
export type Outcome =
  | { ok: true; result: unknown }
  | { ok: false; name: string; message: string; stack?: string; storeCall?: number };

/** An error from the caller's store, carried through the worker so the original can be rethrown. */
export class ForwardedStoreError extends Error {
  readonly storeCall: number;
  constructor(call: number, message: string) {
    super(message);
    this.storeCall = call;
  }
}

const COPY_SLICE = 2 ** 20;

/**
 * A copy of the bytes the worker can own (transferring the store's own buffer would empty it),
 * made 1 MiB at a time with the event loop free in between: one memcpy of a 350 MB encoder would
 * itself block it for longer than the evaluation is meant to, and on a busy VM even an 8 MiB
 * slice took up to 94 ms (first touch of fresh pages).
 */
async function transferable(bytes: Uint8Array): Promise<Uint8Array> {
  const out = new Uint8Array(bytes.length);
  for (let o = 0; o < bytes.length; o += COPY_SLICE) {
    if (o > 0) await new Promise((resolve) => setImmediate(resolve));
    out.set(bytes.subarray(o, o + COPY_SLICE), o);
  }
  return out;
}

/**
 * What one in-process evaluation may use of the operator's process. The worker's V8 heap is capped
 * by resourceLimits; onnxruntime's own memory is not V8's, so the bytes the worker may read (models
 * and packs, which sessions and tensors are built from) are capped too; and it has a deadline.
 */
export type WorkerLimits = {
  /** Old-generation heap of the worker (V8 resourceLimits.maxOldGenerationSizeMb). */
  heapMb: number;
  /** Bytes the worker may read through the store, all calls together. */
  readBytes: number;
  /** Time from start to result; past it the worker is terminated. */
  timeoutMs: number;
};

export const DEFAULT_WORKER_LIMITS: WorkerLimits = {
  heapMb: 512,
  readBytes: 512 * 1024 * 1024,
  timeoutMs: 10 * 60_000,
};

/**
 * The evaluation went past one of its WorkerLimits: not something a retry mends. `limit` says
 * which: "memory" (the worker's heap), "read" (bytes read) or "time" (the deadline).
 */
export class WorkerLimitExceeded extends Error {
  readonly limit: "memory" | "read" | "time";
  constructor(limit: "memory" | "read" | "time", message: string) {
    super(message);
    this.name = "WorkerLimitExceeded";
    this.limit = limit;
  }
}

export type WorkerOptions = { limits?: Partial<WorkerLimits> | undefined; signal?: AbortSignal | undefined };

/**
 * Runs worker-main.ts's scoreRound(store, req) in a worker thread; `req` must be cloneable data.
 * The worker is terminated when `signal` aborts (leadership lost: the rejection is the signal's
 * reason) or a limit is passed (WorkerLimitExceeded).
 */
export async function inWorkerThread<Result>(store: ObjectStore, req: unknown, o: WorkerOptions = {}): Promise<Result> {
  o.signal?.throwIfAborted();
  const limits = { ...DEFAULT_WORKER_LIMITS, ...o.limits };
  const { port1, port2 } = new MessageChannel();
  const failedCalls = new Map<number, unknown>();
  let read = 0;
  port1.on("message", async (call: StoreCall) => {
    let reply: StoreReply;
    const transfer: ArrayBuffer[] = [];
    try {
      let value: unknown;
      if (call.op === "get") {
        const bytes = await store.get(call.args[0] as string, call.args[1] as ReadLimit | undefined);
        read += bytes?.length ?? 0;
        if (read > limits.readBytes) {
          throw new WorkerLimitExceeded(
            "read",
            `in-process evaluation read more than ${limits.readBytes} bytes (at ${call.args[0]})`,
          );
        }
        value = bytes && (await transferable(bytes));
        if (value) transfer.push((value as Uint8Array).buffer as ArrayBuffer);
      } else if (call.op === "put") {
        await store.put(...(call.args as [string, Uint8Array | string, string | undefined]));
      } else if (call.op === "copy") await store.copy(...(call.args as [string, string]));
      else value = await store.list(call.args[0] as string);
      reply = { id: call.id, ok: true, value };
    } catch (e) {
      failedCalls.set(call.id, e);
      reply = { id: call.id, ok: false, message: (e as Error)?.message ?? String(e) };
      // A document over its limit is bad input the worker reports as such, not a store failure.
      if (e instanceof ObjectTooLarge)
        reply.tooLarge = { uri: call.args[0] as string, size: e.size, maxBytes: e.maxBytes };
    }
    port1.postMessage(reply, transfer);
  });
  const worker = new Worker(new URL("./worker-main.ts", import.meta.url), {
    workerData: { req, port: port2 },
    transferList: [port2],
    resourceLimits: { maxOldGenerationSizeMb: limits.heapMb, maxYoungGenerationSizeMb: 16 },
  });
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    const outcome = await new Promise<Outcome>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", (err: Error & { code?: string }) =>
        reject(
          err.code === "ERR_WORKER_OUT_OF_MEMORY"
            ? new WorkerLimitExceeded("memory", `in-process evaluation ran out of its ${limits.heapMb} MiB heap`)
            : err,
        ),
      );
      worker.once("exit", (code) => reject(new Error(`evaluation worker exited with code ${code} before reporting`)));
      timer = setTimeout(
        () => reject(new WorkerLimitExceeded("time", `in-process evaluation took longer than ${limits.timeoutMs} ms`)),
        limits.timeoutMs,
      );
      onAbort = () => reject(o.signal!.reason);
      o.signal?.addEventListener("abort", onAbort, { once: true });
    });
    if (outcome.ok) return outcome.result as Result;
    if (outcome.storeCall !== undefined && failedCalls.has(outcome.storeCall)) throw failedCalls.get(outcome.storeCall);
    const err =
      outcome.name === "ExecutionProviderUnavailable"
        ? new ExecutionProviderUnavailable(outcome.message)
        : new Error(outcome.message);
    err.name = outcome.name;
    if (outcome.stack) err.stack = outcome.stack;
    throw err;
  } finally {
    clearTimeout(timer);
    if (onAbort) o.signal?.removeEventListener("abort", onAbort);
    port1.close();
    await worker.terminate();
  }
}

/** The worker's view of the caller's store. */
export class ForwardingStore implements ObjectStore {
  readonly #port: MessagePort;
  readonly #pending = new Map<number, (reply: StoreReply) => void>();
  #next = 0;
  constructor(port: MessagePort) {
    this.#port = port;
    port.on("message", (reply: StoreReply) => {
      this.#pending.get(reply.id)?.(reply);
      this.#pending.delete(reply.id);
    });
  }
  #call<T>(op: StoreCall["op"], args: unknown[], transfer: ArrayBuffer[] = []): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, (reply) => {
        if (reply.ok) resolve(reply.value as T);
        else if (reply.tooLarge)
          reject(new ObjectTooLarge(reply.tooLarge.uri, reply.tooLarge.size, reply.tooLarge.maxBytes));
        else reject(new ForwardedStoreError(id, reply.message));
      });
      this.#port.postMessage({ id, op, args } satisfies StoreCall, transfer);
    });
  }
  async get(uri: string, limit?: ReadLimit): Promise<Uint8Array | undefined> {
    return (await this.#call<Uint8Array | undefined>("get", [uri, limit])) ?? undefined;
  }
  put(uri: string, body: Uint8Array | string, contentType?: string): Promise<void> {
    // Moved, not copied: a copy would be made on the receiving side, the event loop we protect.
    const owned = typeof body === "string" ? body : body.slice();
    return this.#call("put", [uri, owned, contentType], typeof owned === "string" ? [] : [owned.buffer as ArrayBuffer]);
  }
  copy(from: string, to: string): Promise<void> {
    return this.#call("copy", [from, to]);
  }
  list(prefix: string): Promise<StoredObject[]> {
    return this.#call("list", [prefix]);
  }
}
