// Where a run's rounds live, as slice-manifest.ts is for slices: the one place that spells the
// round folder layout under spec.artifacts (docs/design.md, S3 layout):
//   <artifacts.prefix>rounds/<NNNN>/plan.json      written by the operator before the Job
//                                   _SUCCESS       the trainer's last write
//                                   failed.json    the operator's record of a failed round
//                                   eval.json      the evaluator's result
//                                   compute.json   GPU-seconds and times of its trainer Job, kept after the Job is gone
//                                   verdict.json   the gates' verdict on eval.json, judged once, with those gates
//                                   eval-request.json  what the evaluation Job scores, written before the Job
//                                   progress.json  the trainer's progress while it trains (round-documents.ts)
import { EVAL_REQUEST_JSON } from "./eval-request.ts";
import { EVAL_JSON } from "./eval-result.ts";

export const ROUND_FILES = {
  plan: "plan.json",
  success: "_SUCCESS",
  failure: "failed.json",
  eval: EVAL_JSON,
  checkpoint: "checkpoint.pt",
  summary: "train_summary.json",
  compute: "compute.json",
  verdict: "verdict.json",
  evalRequest: EVAL_REQUEST_JSON,
  progress: "progress.json",
} as const;

export type ArtifactsLocation = { bucket: string; prefix: string };

const ROUNDS = "rounds/";
const pad = (round: number) => String(round).padStart(4, "0");

/** Key prefix of all rounds: `<prefix>rounds/`. */
export const roundsPrefix = (artifactsPrefix: string) => `${artifactsPrefix}${ROUNDS}`;

/** Key prefix of one round: `<prefix>rounds/0003/`. */
export const roundPrefix = (artifactsPrefix: string, round: number) => `${roundsPrefix(artifactsPrefix)}${pad(round)}/`;

export const roundsUri = (a: ArtifactsLocation) => `s3://${a.bucket}/${roundsPrefix(a.prefix)}`;
/** The operator's cache of round documents, beside rounds/ (controller/document-cache.ts). */
export const documentCacheUri = (a: ArtifactsLocation) => `s3://${a.bucket}/${a.prefix}operator-cache.json`;

/** `s3://<bucket>/<prefix>rounds/0003/` */
export const roundUri = (a: ArtifactsLocation, round: number) => `s3://${a.bucket}/${roundPrefix(a.prefix, round)}`;

/** `0003/eval.json` (a key relative to rounds/) to its round and file; nested keys (partial/) are not round files. */
export function parseRoundKey(relative: string): { round: number; file: string } | undefined {
  const m = /^([0-9]{4,})\/([^/]+)$/.exec(relative);
  return m ? { round: Number(m[1]), file: m[2]! } : undefined;
}
