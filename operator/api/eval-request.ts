// eval-request.json: what the evaluation Job of a round scores, written by the operator into the
// round folder before the Job starts (docs/evaluation.md). The Job's command line names only this
// file, so it stays a few bytes however many slices a run has (a year of hourly slices listed in
// argv passed the kernel's 128 KiB limit of one argument). The request is bound to its round: it
// sits in the folder it names, and the evaluator refuses one that does not.
import { z } from "zod";
import { s3Uri } from "./common.ts";

export const EVAL_REQUEST_JSON = "eval-request.json";
export const EVAL_REQUEST_SCHEMA_VERSION = 1;

/** A folder: s3://bucket/ or s3://bucket/prefix/ (a source prefix may be empty). */
const s3Folder = z
  .string()
  .max(1024)
  .regex(/^s3:\/\/[a-z0-9][a-z0-9.-]*[a-z0-9]\/(.+\/)?$/, "an s3://bucket/prefix/ folder");

export const evalRequest = z
  .object({
    schemaVersion: z.literal(EVAL_REQUEST_SCHEMA_VERSION),
    run: z.object({ namespace: z.string().min(1), name: z.string().min(1), uid: z.string().min(1) }).strict(),
    round: z.int().min(0).max(9999),
    /** The round folder, s3://<artifacts>/rounds/<NNNN>/: the one this file sits in. */
    roundUri: s3Folder,
    roundSlices: z.array(z.string().min(1)).min(1),
    /** The source prefix: each slice's manifest.json there names its retrieval pack. */
    sourceUri: s3Folder,
    /** Every valid slice discovered so far (the evaluator scores those up to the round plus the next). */
    slices: z.array(z.string().min(1)),
    zeroShot: z.array(z.object({ name: z.string().min(1), uri: s3Uri }).strict()),
    k: z.array(z.int().min(1)).min(1),
    /** The promoted version to rescore on the same packs, for maxRegression gates. */
    baseline: z
      .object({ version: z.int().min(1), uri: s3Folder })
      .strict()
      .optional(),
    executionProvider: z.enum(["cpu", "cuda"]),
    batchSize: z.int().min(1),
  })
  .strict()
  .describe("EvalRequest: what the evaluation of one round scores.");
export type EvalRequest = z.infer<typeof evalRequest>;

/** Why `doc`, read from `uri`, does not describe the round it was found in (undefined: it does). */
export function requestBindingProblem(uri: string, doc: EvalRequest, env: NodeJS.ProcessEnv = {}): string | undefined {
  if (uri !== `${doc.roundUri}${EVAL_REQUEST_JSON}`) return `it names round folder ${doc.roundUri}, not its own`;
  const folder = /\/rounds\/([0-9]{4,})\/$/.exec(doc.roundUri)?.[1];
  if (folder !== undefined && Number(folder) !== doc.round)
    return `it names round ${doc.round}, but sits in the folder of round ${Number(folder)}`;
  // The Job's own identity (kube/objects.ts podEnv): a request copied from another run is refused.
  if (env.TICCLIP_ROUND !== undefined && env.TICCLIP_ROUND !== String(doc.round))
    return `it names round ${doc.round}, but this Job evaluates round ${env.TICCLIP_ROUND}`;
  const run = `${doc.run.namespace}/${doc.run.name}`;
  if (env.TICCLIP_RUN !== undefined && env.TICCLIP_RUN !== run)
    return `it names run ${run}, but this Job belongs to ${env.TICCLIP_RUN}`;
  return undefined;
}
