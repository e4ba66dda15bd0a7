// `evaluate` command of the operator image, run as the evaluation Job of a round:
//
//   node operator/evaluation/cli.ts evaluate --request s3://runs/p/rounds/0003/eval-request.json [--threads N]
//
// The request (api/eval-request.ts) is the one the operator wrote into the round folder before it
// created the Job: the round, its slices, every slice known so far, zero-shot packs, K, the
// baseline to rescore, the execution provider. It is refused unless it sits in the round folder it
// names and names this Job's run and round (TICCLIP_RUN, TICCLIP_ROUND); nothing is written then.
// Retrieval packs come from each slice's manifest.json (eval.retrieval); the round is scored on the
// slices up to its newest plus the next one. Writes <roundUri>eval.json, Failed or Succeeded.
// Exit codes: 0 scored, 2 bad input (eval.json says why, or the request was refused; do not
// retry), 1 anything else (retry). S3 connection from the environment the Job's pod was given
// (api/s3-connection.ts S3_ENV) and the default AWS credential chain (AWS_ACCESS_KEY_ID /
// AWS_SECRET_ACCESS_KEY, IRSA).
import { parseArgs } from "node:util";
import { evalRequest, requestBindingProblem } from "../api/eval-request.ts";
import { connectionFromEnv } from "../api/s3-connection.ts";
import { createS3Client } from "../s3/client.ts";
import { DOCUMENT_LIMITS, readDocument } from "../s3/documents.ts";
import { S3ObjectStore, type ObjectStore } from "../s3/object-store.ts";
import { writeEvalResult } from "./evaluate.ts";
import { scoreRound } from "./score.ts";
import { buildEvaluateRequest } from "./request.ts";

export const EXIT_OK = 0;
export const EXIT_TRANSIENT = 1;
export const EXIT_BAD_INPUT = 2;

const USAGE = `usage: cli.ts evaluate --request s3://.../rounds/NNNN/eval-request.json [--threads N (default: the CPU limit)]`;

export async function main(argv: string[], store?: ObjectStore, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const [cmd, ...rest] = argv;
  const bad = (msg: string) => {
    console.error(`error: ${msg}\n${USAGE}`);
    return EXIT_BAD_INPUT;
  };
  if (cmd !== "evaluate") return bad(`unknown command ${cmd ?? "(none)"}`);
  let v: { request?: string | undefined; threads?: string | undefined };
  try {
    v = parseArgs({
      args: rest,
      options: { request: { type: "string" }, threads: { type: "string" } },
      strict: true,
    }).values;
  } catch (e) {
    return bad((e as Error).message);
  }
  if (!v.request?.startsWith("s3://")) return bad("--request s3://... is required");
  const threads = v.threads === undefined ? undefined : Number(v.threads);
  if (threads !== undefined && (!Number.isInteger(threads) || threads < 1)) return bad(`--threads ${v.threads}`);
  let s3: ObjectStore;
  try {
    s3 = store ?? new S3ObjectStore(createS3Client(connectionFromEnv(env)));
  } catch (e) {
    return bad((e as Error).message);
  }
  try {
    const read = await readDocument(s3, v.request, DOCUMENT_LIMITS.evalRequest, evalRequest);
    if (!read) return bad(`${v.request} not found`);
    if ("invalid" in read) return bad(`${v.request}: ${read.invalid}`);
    const refused = requestBindingProblem(v.request, read.value, env);
    if (refused) return bad(`${v.request} is not this round's request: ${refused}`);
    const req = await buildEvaluateRequest(s3, read.value, new Date().toISOString(), {
      ...(threads ? { intraOpNumThreads: threads } : {}),
    });
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
