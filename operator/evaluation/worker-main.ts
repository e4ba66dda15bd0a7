// Entry of the evaluation worker thread (started by inWorkerThread in worker.ts). A file of its
// own: its top-level await must not sit in a module that evaluate.ts imports (an import cycle
// through a module still awaiting never finishes loading).
import { parentPort, workerData, type MessagePort } from "node:worker_threads";
import type { EvaluateRequest } from "./evaluate.ts";
import { scoreRound } from "./score.ts";
import { ForwardedStoreError, ForwardingStore, type Outcome } from "./worker.ts";

const { req, port } = workerData as { req: EvaluateRequest; port: MessagePort };
let outcome: Outcome;
try {
  outcome = { ok: true, result: await scoreRound(new ForwardingStore(port), req) };
} catch (e) {
  const err = e as Error;
  outcome = {
    ok: false,
    name: err?.name ?? "Error",
    message: err?.message ?? String(e),
    ...(err?.stack ? { stack: err.stack } : {}),
  };
  if (e instanceof ForwardedStoreError) outcome.storeCall = e.storeCall;
}
port.close();
parentPort!.postMessage(outcome);
