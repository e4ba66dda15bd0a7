// From a run and a round to what the evaluate step needs: the Job's command line and environment
// (pure), or an EvaluateRequest for in-process evaluation (reads the slice manifests).
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import { roundUri } from "../api/round-layout.ts";
import { MANIFEST_NAME, sliceManifest } from "../api/slice-manifest.ts";
import { DOCUMENT_LIMITS, readDocument } from "../s3/documents.ts";
import type { ObjectStore } from "../s3/object-store.ts";
import type { EvaluateRequest } from "./evaluate.ts";
import type { ExecutionProvider } from "./runtime.ts";
import { slicesToScore } from "./tic.ts";

export type RoundToEvaluate = {
  spec: Pick<ContinualClipRunSpec, "source" | "artifacts" | "evaluation">;
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

/** Arguments after `node operator/evaluation/cli.ts` for the evaluation Job. */
export function evaluateArgs(r: RoundToEvaluate): string[] {
  const ev = r.spec.evaluation;
  return [
    "evaluate",
    "--round-uri",
    roundUri(r.spec.artifacts.s3, r.round),
    "--round",
    String(r.round),
    "--round-slices",
    r.roundSlices.join(","),
    "--source-uri",
    sourceUri(r.spec),
    "--slices",
    r.slices.join(","),
    ...ev.zeroShot.flatMap((z) => ["--zero-shot", `${z.name}=${z.uri}`]),
    "--k",
    ev.retrieval.k.join(","),
    ...(r.promoted ? ["--baseline-uri", r.promoted.uri, "--baseline-version", String(r.promoted.version)] : []),
    "--execution-provider",
    ev.runner.executionProvider,
    "--batch-size",
    String(ev.runner.batchSize),
  ];
}

/** S3 settings of the evaluation Job (credentials come from the source's Secret, as for the trainer). */
export function evaluateEnv(spec: Pick<ContinualClipRunSpec, "source">): Record<string, string> {
  return {
    AWS_REGION: spec.source.s3.region,
    ...(spec.source.s3.endpoint ? { S3_ENDPOINT: spec.source.s3.endpoint } : {}),
  };
}

/** Retrieval pack URIs of the given slices, from their manifests; slices without a pack are skipped. */
export async function retrievalPacks(
  store: ObjectStore,
  source: string,
  sliceIds: string[],
): Promise<{ sliceId: string; packUri: string }[]> {
  const base = source.endsWith("/") ? source : source + "/";
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

export type RequestOptions = { executionProvider?: ExecutionProvider; batchSize?: number; intraOpNumThreads?: number };

/** The EvaluateRequest for a round, with the packs it should be scored on (in-process and the CLI). */
export async function buildEvaluateRequest(
  store: ObjectStore,
  r: {
    round: number;
    roundUri: string;
    roundSlices: string[];
    sourceUri?: string | undefined;
    slices: string[];
    zeroShot: { name: string; uri: string }[];
    k: number[];
    promoted?: { version: number; uri: string } | undefined;
  },
  now: string,
  opts: RequestOptions = {},
): Promise<EvaluateRequest> {
  const withPacks = r.sourceUri ? await retrievalPacks(store, r.sourceUri, r.slices) : [];
  const chosen = new Set(
    withPacks.length
      ? slicesToScore(
          withPacks.map((p) => p.sliceId),
          r.roundSlices,
        )
      : [],
  );
  return {
    round: r.round,
    roundUri: r.roundUri,
    roundSlices: r.roundSlices,
    retrieval: withPacks.filter((p) => chosen.has(p.sliceId)),
    zeroShot: r.zeroShot,
    k: r.k,
    baseline: r.promoted,
    now,
    ...(opts.executionProvider ? { executionProvider: opts.executionProvider } : {}),
    ...(opts.batchSize ? { batchSize: opts.batchSize } : {}),
    ...(opts.intraOpNumThreads ? { intraOpNumThreads: opts.intraOpNumThreads } : {}),
  };
}

/** In-process form of evaluateArgs: the same request the Job would build. */
export function requestInputs(r: RoundToEvaluate) {
  return {
    round: r.round,
    roundUri: roundUri(r.spec.artifacts.s3, r.round),
    roundSlices: r.roundSlices,
    sourceUri: sourceUri(r.spec),
    slices: r.slices,
    zeroShot: r.spec.evaluation.zeroShot,
    k: r.spec.evaluation.retrieval.k,
    promoted: r.promoted,
  };
}
