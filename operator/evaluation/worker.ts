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

/** Runs worker-main.ts's scoreRound(store, req) in a worker thread; `req` must be cloneable data. */
export async function inWorkerThread<Result>(store: ObjectStore, req: unknown): Promise<Result> {
  const { port1, port2 } = new MessageChannel();
  const failedCalls = new Map<number, unknown>();
  port1.on("message", async (call: StoreCall) => {
    let reply: StoreReply;
    const transfer: ArrayBuffer[] = [];
    try {
      let value: unknown;
      if (call.op === "get") {
        const bytes = await store.get(call.args[0] as string, call.args[1] as ReadLimit | undefined);
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
  });
  try {
    const outcome = await new Promise<Outcome>((resolve, reject) => {
      worker.once("message", resolve);
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`evaluation worker exited with code ${code} before reporting`)));
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
