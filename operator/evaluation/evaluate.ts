// Evaluates one round: scores the round's ONNX encoders (and, for maxRegression gates, the
// promoted model's) on every retrieval pack the round should see and on each zero-shot pack,
// folds the scores into metric paths and the TiC matrix, and returns eval.json's content.
// Bad input never throws: it comes back as a Failed result with a reason (the round is Rejected).
//
// This module is what the operator's own thread loads: the scoring itself (score.ts) and
// onnxruntime are loaded only by the worker thread and the evaluation Job, which keeps about
// 11 MiB of native libraries out of the operator's resident memory (docs/scale.md).
import { withSlash } from "../api/common.ts";
import { parseRoundKey, ROUND_FILES } from "../api/round-layout.ts";
import { EVAL_JSON, EVAL_SCHEMA_VERSION, evalResult, type EvalResult } from "../api/eval-result.ts";
import { DOCUMENT_LIMITS, readDocument } from "../s3/documents.ts";
import type { ObjectStore } from "../s3/object-store.ts";
import { defaultIntraOpThreads, type ExecutionProvider } from "./runtime.ts";
import type { TicRow } from "./tic.ts";
import { inWorkerThread, WorkerLimitExceeded, type WorkerOptions } from "./worker.ts";

export type EvaluateRequest = {
  round: number;
  /** The round folder: s3://<artifacts>/rounds/<NNNN>/ with model.json and both encoders. */
  roundUri: string;
  /** The slices this round trained on as new data. */
  roundSlices: string[];
  /** Retrieval packs to score, usually slicesToScore(...) of the slices that have one. */
  retrieval: { sliceId: string; packUri: string }[];
  zeroShot: { name: string; uri: string }[];
  k: number[];
  /** A merged round's trained weights before the merge (<roundUri>raw/), scored on the same packs for the record. */
  unmerged?: { uri: string } | undefined;
  /** The promoted version to rescore on the same packs (maxRegression gates compare like with like). */
  baseline?: { version: number; uri: string } | undefined;
  /** TiC rows of earlier rounds; read from rounds/<NNNN>/eval.json beside roundUri when omitted. */
  previousRows?: TicRow[] | undefined;
  executionProvider?: ExecutionProvider;
  /** Upper bound on rows per inference call (encoderBatch picks the size per model). */
  batchSize?: number;
  /** Default: the pod's CPU limit or os.availableParallelism(). */
  intraOpNumThreads?: number;
  /** RFC 3339 time to record (injected, so results are reproducible). */
  now: string;
};

export const DEFAULT_BATCH_SIZE = 64;

/**
 * Evaluates a round in a worker thread: encoding and metrics are seconds to minutes of CPU, which
 * on the operator's event loop would stall reconciles and lease renewals. S3 reads and writes stay
 * on the calling thread (they are asynchronous); only bytes cross over. The evaluation Job, a
 * process of its own, calls scoreRound directly.
 */
export async function evaluateRound(
  store: ObjectStore,
  req: EvaluateRequest,
  options: WorkerOptions = {},
): Promise<EvalResult> {
  // Unless told otherwise, leave the operator's own thread a CPU: onnxruntime's intra-op threads
  // keep every core they are given busy, and a starved event loop is as late as a blocked one.
  const threads = req.intraOpNumThreads ?? Math.max(1, defaultIntraOpThreads() - 1);
  try {
    return await inWorkerThread<EvalResult>(store, { ...req, intraOpNumThreads: threads }, options);
  } catch (err) {
    if (!(err instanceof WorkerLimitExceeded)) throw err;
    // Retrying would hit the same limit: the round is judged on this result (Rejected, with why).
    return {
      schemaVersion: EVAL_SCHEMA_VERSION,
      status: "Failed",
      round: req.round,
      roundUri: withSlash(req.roundUri),
      roundSlices: req.roundSlices,
      evaluatedAt: req.now,
      reason: "InProcessLimitExceeded",
      message: `${err.message}: evaluate this run in a Job (spec.evaluation.runner.mode: Job)`,
    };
  }
}

/** TiC rows of rounds before `beforeRound`, from their eval.json (failed evaluations have none). */
export async function readTicRows(store: ObjectStore, roundsUri: string, beforeRound: number): Promise<TicRow[]> {
  const rows: TicRow[] = [];
  const base = withSlash(roundsUri);
  for (const o of await store.list(base)) {
    const key = parseRoundKey(o.uri.slice(base.length));
    if (!key || key.round >= beforeRound || key.file !== ROUND_FILES.eval) continue;
    const parsed = await readEvalResult(store, o.uri);
    if (parsed?.status === "Succeeded") {
      rows.push({
        round: parsed.round,
        roundSlices: parsed.roundSlices,
        cells: Object.fromEntries(parsed.candidate.retrieval.map((r) => [r.sliceId, r.metrics.meanRecallAt1!])),
      });
    }
  }
  return rows;
}

/** eval.json of a round, or undefined when absent or unreadable. */
export async function readEvalResult(store: ObjectStore, uri: string): Promise<EvalResult | undefined> {
  const read = await readDocument(
    store,
    uri.endsWith(EVAL_JSON) ? uri : withSlash(uri) + EVAL_JSON,
    DOCUMENT_LIMITS.eval,
    evalResult,
  );
  return read && "value" in read ? read.value : undefined;
}

export async function writeEvalResult(store: ObjectStore, roundUri: string, result: EvalResult): Promise<string> {
  const uri = withSlash(roundUri) + EVAL_JSON;
  await store.put(uri, JSON.stringify(result, null, 2) + "\n", "application/json");
  return uri;
}
