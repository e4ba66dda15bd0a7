// From a run and a round to what the evaluate step needs: the round's eval-request.json (pure), the
// Job's command line and environment (pure), and the EvaluateRequest both paths score (reads the
// slice manifests).
import { withSlash } from "../api/common.ts";
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import { EVAL_REQUEST_JSON, EVAL_REQUEST_SCHEMA_VERSION, type EvalRequest } from "../api/eval-request.ts";
import { roundUri } from "../api/round-layout.ts";
import { UNMERGED_DIR } from "../api/round-plan.ts";
import { MANIFEST_NAME, sliceManifest } from "../api/slice-manifest.ts";
import { DOCUMENT_LIMITS, readDocument } from "../s3/documents.ts";
import type { ObjectStore } from "../s3/object-store.ts";
import type { EvaluateRequest } from "./evaluate.ts";
import { slicesToScore } from "./tic.ts";

export type RoundToEvaluate = {
  spec: Pick<ContinualClipRunSpec, "source" | "artifacts" | "evaluation">;
  /** The run whose round this is (the request names it; the Job checks it is its own). */
  run: { namespace: string; name: string; uid: string };
  round: number;
  /** The round's new slices. */
  roundSlices: string[];
  /** Every valid slice discovered so far (the evaluator picks those up to the round plus the next). */
  slices: string[];
  /** The promoted version to rescore for maxRegression gates (status.promoted). */
  promoted?: { version: number; uri: string } | undefined;
};

export const sourceUri = (spec: Pick<ContinualClipRunSpec, "source">) =>
  `s3://${spec.source.s3.bucket}/${spec.source.s3.prefix}`;

/** The round's eval-request.json: one request for the evaluation Job and the in-process path alike. */
export function evalRequestFor(r: RoundToEvaluate): EvalRequest {
  const ev = r.spec.evaluation;
  return {
    schemaVersion: EVAL_REQUEST_SCHEMA_VERSION,
    run: { namespace: r.run.namespace, name: r.run.name, uid: r.run.uid },
    round: r.round,
    roundUri: roundUri(r.spec.artifacts.s3, r.round),
    roundSlices: r.roundSlices,
    sourceUri: sourceUri(r.spec),
    slices: r.slices,
    zeroShot: ev.zeroShot.map((z) => ({ name: z.name, uri: z.uri })),
    k: ev.retrieval.k,
    ...(r.promoted ? { baseline: { version: r.promoted.version, uri: r.promoted.uri } } : {}),
    executionProvider: ev.runner.executionProvider,
    batchSize: ev.runner.batchSize,
  };
}

/** Where a round's eval-request.json lives. */
export const evalRequestUri = (r: Pick<RoundToEvaluate, "spec" | "round">) =>
  `${roundUri(r.spec.artifacts.s3, r.round)}${EVAL_REQUEST_JSON}`;

/**
 * Arguments after `node operator/evaluation/cli.ts` for the evaluation Job: only where its request
 * is, so the command line stays the same size however many slices the run has.
 */
export function evaluateArgs(r: Pick<RoundToEvaluate, "spec" | "round">): string[] {
  return ["evaluate", "--request", evalRequestUri(r)];
}

/** Retrieval pack URIs of the given slices, from their manifests; slices without a pack are skipped. */
export async function retrievalPacks(
  store: ObjectStore,
  source: string,
  sliceIds: string[],
): Promise<{ sliceId: string; packUri: string }[]> {
  const base = withSlash(source);
  const out: { sliceId: string; packUri: string }[] = [];
  for (const id of sliceIds) {
    const uri = `${base}${id}/${MANIFEST_NAME}`;
    const read = await readDocument(store, uri, DOCUMENT_LIMITS.sliceManifest, sliceManifest);
    if (!read) throw new Error(`${uri} not found`);
    if ("invalid" in read) throw new Error(`${uri}: ${read.invalid}`);
    if (read.value.eval?.retrieval) out.push({ sliceId: id, packUri: `${base}${id}/${read.value.eval.retrieval}` });
  }
  return out;
}

export type RequestOptions = { intraOpNumThreads?: number };

/** The EvaluateRequest for a round's request, with the packs it should be scored on (in-process and the CLI). */
export async function buildEvaluateRequest(
  store: ObjectStore,
  r: EvalRequest,
  now: string,
  opts: RequestOptions = {},
): Promise<EvaluateRequest> {
  const withPacks = await retrievalPacks(store, r.sourceUri, r.slices);
  const chosen = new Set(
    withPacks.length
      ? slicesToScore(
          withPacks.map((p) => p.sliceId),
          r.roundSlices,
        )
      : [],
  );
  // A merged round (plan.merge) keeps its trained weights in raw/: scored beside the merge.
  const raw = withSlash(r.roundUri) + UNMERGED_DIR;
  const unmerged = (await store.get(`${raw}model.json`, { maxBytes: 1 << 20 })) ? { uri: raw } : undefined;
  return {
    round: r.round,
    roundUri: r.roundUri,
    unmerged,
    roundSlices: r.roundSlices,
    retrieval: withPacks.filter((p) => chosen.has(p.sliceId)),
    zeroShot: r.zeroShot,
    k: r.k,
    baseline: r.baseline,
    now,
    executionProvider: r.executionProvider,
    batchSize: r.batchSize,
    ...(opts.intraOpNumThreads ? { intraOpNumThreads: opts.intraOpNumThreads } : {}),
  };
}
