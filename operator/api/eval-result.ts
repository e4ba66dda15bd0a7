// eval.json: written by the evaluator into <artifacts.prefix>rounds/<NNNN>/ (docs/evaluation.md).
// The full TiC matrix lives here; status carries only the flat metrics and gate results.
import { z } from "zod";
import { ZERO_SHOT_METRICS } from "./gate-metrics.ts";

export const EVAL_JSON = "eval.json";
export const EVAL_SCHEMA_VERSION = 1;

const unit = z.number().min(0).max(1);
const metricMap = z.record(z.string(), z.number());

export const retrievalScore = z.object({
  sliceId: z.string(),
  packUri: z.string(),
  relation: z.enum(["id", "backward", "forward"]),
  images: z.int().min(1),
  texts: z.int().min(1),
  metrics: z.record(z.string(), unit),
  /** What a model ranking candidates at random scores on this pack, per metric (same keys). */
  chance: z.record(z.string(), unit).optional(),
  /** Distinct caption texts (token-identical captions are one text, right for each of their images). */
  distinctTexts: z.int().min(1).optional(),
});

export const zeroShotScore = z.object({
  name: z.string(),
  packUri: z.string(),
  images: z.int().min(1),
  classes: z.int().min(2),
  templates: z.int().min(1),
  metrics: z.record(z.enum(ZERO_SHOT_METRICS), unit),
  chance: z.record(z.enum(ZERO_SHOT_METRICS), unit).optional(),
});

export const modelScores = z.object({
  uri: z.string(),
  architecture: z.string(),
  embeddingDim: z.int(),
  sha256: z.object({ image: z.string(), text: z.string() }),
  retrieval: z.array(retrievalScore),
  zeroShot: z.array(zeroShotScore),
  /** Flat metric paths (retrieval.id.meanRecallAt1, zeroShot.<name>.top1, ...). */
  metrics: metricMap,
  /** Chance level of each metric path in `metrics`, folded over the same packs. */
  chance: metricMap.optional(),
  notApplicable: z.record(z.string(), z.string()),
});

export const ticMatrixSchema = z.object({
  metric: z.literal("meanRecallAt1"),
  rounds: z.array(z.int().min(0)),
  roundSlices: z.array(z.array(z.string())),
  slices: z.array(z.string()),
  values: z.array(z.array(unit.nullable())),
  summary: z.object({ id: unit.nullable(), backward: unit.nullable(), forward: unit.nullable() }),
});

const common = {
  schemaVersion: z.literal(EVAL_SCHEMA_VERSION),
  round: z.int().min(0),
  roundUri: z.string(),
  roundSlices: z.array(z.string()),
  evaluatedAt: z.string(),
};

export const evalSucceeded = z.object({
  ...common,
  status: z.literal("Succeeded"),
  k: z.array(z.int().min(1)),
  candidate: modelScores,
  /** The promoted model rescored on the same packs, for maxRegression gates. */
  baseline: modelScores.extend({ version: z.int().min(1) }).optional(),
  /** A merged round's trained weights before the merge (raw/), on the same packs; gates use `candidate`, the merge. */
  unmerged: modelScores.optional(),
  /** Why the promoted model was not rescored (gates then use its metrics from status). */
  baselineProblem: z.string().optional(),
  matrix: ticMatrixSchema,
  timing: z.object({
    seconds: z.number().min(0),
    imagesEncoded: z.int().min(0),
    textsEncoded: z.int().min(0),
    executionProvider: z.string(),
    /** How the encoders ran: what a reader needs to compare timings and trust the numbers. */
    precision: z.enum(["fp32", "fp16", "int8"]).optional(),
    intraOpNumThreads: z.int().min(1).optional(),
    batchSize: z.object({ image: z.int().min(1), text: z.int().min(1) }).optional(),
    /** Per encoder file: "hit", "written", "off", or why the optimised-graph cache was not used. */
    optimizedModelCache: z.record(z.string(), z.string()).optional(),
    encodeSeconds: z.number().min(0).optional(),
    metricsSeconds: z.number().min(0).optional(),
    /** True when scored in a worker thread of the operator (in-process), off its event loop. */
    inWorkerThread: z.boolean().optional(),
  }),
});

export const evalFailed = z.object({
  ...common,
  status: z.literal("Failed"),
  reason: z.string(),
  message: z.string(),
});

export const evalResult = z.discriminatedUnion("status", [evalSucceeded, evalFailed]);
export type EvalResult = z.infer<typeof evalResult>;
export type EvalSucceeded = z.infer<typeof evalSucceeded>;
export type EvalFailed = z.infer<typeof evalFailed>;
export type ModelScores = z.infer<typeof modelScores>;
