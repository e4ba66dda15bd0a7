// `evaluate` command of the operator image, run as a Job (or in-process for small packs):
//
//   node operator/evaluation/cli.ts evaluate --round-uri s3://runs/p/rounds/0003/ --round 3 \
//     --round-slices 2019 --source-uri s3://data/slices/ --slices 2016,2017,2018,2019,2020 \
//     [--zero-shot imagenet-val=s3://eval/imagenet-val/] [--k 1,5,10] \
//     [--baseline-uri s3://models/clip/v2/ --baseline-version 2] [--execution-provider cpu|cuda]
//
// Retrieval packs come from each slice's manifest.json (eval.retrieval); the round is scored on the
// slices up to its newest plus the next one. Writes <round-uri>eval.json, Failed or Succeeded.
// Exit codes: 0 scored, 2 bad input (eval.json says why; do not retry), 1 anything else (retry).
// S3 connection from the environment: S3_ENDPOINT (optional), AWS_REGION, and the default AWS
// credential chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, IRSA).
import { parseArgs } from "node:util";
import { createS3Client } from "../s3/client.ts";
import { S3ObjectStore, type ObjectStore } from "../s3/object-store.ts";
import { writeEvalResult } from "./evaluate.ts";
import { EXECUTION_PROVIDERS, type ExecutionProvider } from "./runtime.ts";
import { scoreRound } from "./score.ts";
import { buildEvaluateRequest } from "./request.ts";

export const EXIT_OK = 0;
export const EXIT_TRANSIENT = 1;
export const EXIT_BAD_INPUT = 2;

const USAGE = `usage: cli.ts evaluate --round-uri s3://.../rounds/NNNN/ --round N --round-slices ID[,ID] \\
  --source-uri s3://bucket/prefix/ --slices ID,ID,... [--zero-shot NAME=s3://...]... [--k 1,5,10] \\
  [--baseline-uri s3://.../vN/ --baseline-version N] [--execution-provider cpu|cuda] [--batch-size 64] [--threads N (default: the CPU limit)]`;

const list = (s: string | undefined) =>
  (s ?? "")
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);

function parseEvaluateArgs(rest: string[]) {
  return parseArgs({
    args: rest,
    options: {
      "round-uri": { type: "string" },
      round: { type: "string" },
      "round-slices": { type: "string" },
      "source-uri": { type: "string" },
      slices: { type: "string" },
      "zero-shot": { type: "string", multiple: true },
      k: { type: "string", default: "1,5,10" },
      "baseline-uri": { type: "string" },
      "baseline-version": { type: "string" },
      "execution-provider": { type: "string", default: "cpu" },
      "batch-size": { type: "string", default: "64" },
      threads: { type: "string" },
    },
    strict: true,
  });
}

export async function main(argv: string[], store?: ObjectStore): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd !== "evaluate") {
    console.error(USAGE);
    return EXIT_BAD_INPUT;
  }
  let parsed: ReturnType<typeof parseEvaluateArgs>;
  try {
    parsed = parseEvaluateArgs(rest);
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n${USAGE}`);
    return EXIT_BAD_INPUT;
  }
  const v = parsed.values;
  const bad = (msg: string) => {
    console.error(`error: ${msg}\n${USAGE}`);
    return EXIT_BAD_INPUT;
  };
  if (!v["round-uri"]?.startsWith("s3://")) return bad("--round-uri s3://... is required");
  const round = Number(v.round);
  if (!Number.isInteger(round) || round < 0) return bad("--round N is required");
  const roundSlices = list(v["round-slices"]);
  if (!roundSlices.length) return bad("--round-slices is required");
  const ks = list(v.k).map(Number);
  if (!ks.length || ks.some((k) => !Number.isInteger(k) || k < 1)) return bad(`--k ${v.k}: positive integers`);
  const ep = v["execution-provider"] as ExecutionProvider;
  if (!EXECUTION_PROVIDERS.includes(ep))
    return bad(`--execution-provider ${ep}: one of ${EXECUTION_PROVIDERS.join(", ")}`);
  const zeroShot = (v["zero-shot"] ?? []).map((s) => {
    const i = s.indexOf("=");
    return { name: s.slice(0, i), uri: s.slice(i + 1) };
  });
  if (zeroShot.some((z) => !z.name || !z.uri.startsWith("s3://"))) return bad("--zero-shot NAME=s3://...");
  if (v["baseline-uri"] && !v["baseline-version"]) return bad("--baseline-uri needs --baseline-version");

  const s3 =
    store ??
    new S3ObjectStore(
      createS3Client({ region: process.env.AWS_REGION ?? "us-east-1", endpoint: process.env.S3_ENDPOINT || undefined }),
    );
  try {
    const req = await buildEvaluateRequest(
      s3,
      {
        round,
        roundUri: v["round-uri"],
        roundSlices,
        sourceUri: v["source-uri"],
        slices: list(v.slices),
        zeroShot,
        k: ks,
        promoted: v["baseline-uri"] ? { uri: v["baseline-uri"], version: Number(v["baseline-version"]) } : undefined,
      },
      new Date().toISOString(),
      {
        executionProvider: ep,
        batchSize: Number(v["batch-size"]),
        ...(v.threads ? { intraOpNumThreads: Number(v.threads) } : {}),
      },
    );
    // This process does nothing else: no worker thread needed.
    const result = await scoreRound(s3, req);
    const uri = await writeEvalResult(s3, req.roundUri, result);
    if (result.status === "Failed") {
      console.error(`evaluation failed (${result.reason}): ${result.message}\nwrote ${uri}`);
      return EXIT_BAD_INPUT;
    }
    const m = result.candidate.metrics;
    console.log(
      JSON.stringify({ eval: uri, metrics: m, matrix: result.matrix.summary, seconds: result.timing.seconds }),
    );
    return EXIT_OK;
  } catch (e) {
    console.error(`evaluation error: ${(e as Error).stack ?? e}`);
    return EXIT_TRANSIENT;
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
