// The trainer contract: what the operator writes to rounds/<NNNN>/plan.json and the trainer reads.
// Its JSON Schema is generated into trainer-image/ by gen-artifacts.ts and validated there too.
import { z } from "zod";
import { LR_SCHEDULES, OPTIMIZER_STATES, PRECISIONS, REPLAY_STRATEGIES } from "./continual-clip-run.ts";
import { httpUrl, s3Uri } from "./common.ts";
import { S3_ADDRESSING_STYLES } from "./s3-connection.ts";
import { heldOutFraction, jsonCaptionField } from "./slice-manifest.ts";

export const ROUND_PLAN_SCHEMA_VERSION = 1;
/** Beside a merged round's checkpoint.pt: the trained weights before the merge (checkpoint and encoders). */
export const UNMERGED_DIR = "raw/";

export const shardRef = z.object({
  uri: s3Uri.describe("s3://bucket/key of one WebDataset .tar shard."),
  samples: z.int().min(1).describe("Samples in the shard (from the slice manifest)."),
});

export const mixtureSource = z
  .object({
    sliceId: z.string().min(1).max(256),
    shards: z.array(shardRef).min(1),
    weight: z
      .number()
      .gt(0)
      .describe(
        "Per-shard sampling weight: the trainer draws shards with replacement with probability proportional to weight x shard count of the source (open_clip's --train-data-upsampling-factors).",
      ),
    expectedShare: z
      .number()
      .min(0)
      .max(1)
      .describe("Share of the round's samples the planner expects from this source."),
    jsonCaptionField: jsonCaptionField.optional(),
    heldOutFraction: heldOutFraction.optional(),
  })
  .strict();

export const roundPlan = z
  .object({
    schemaVersion: z.literal(ROUND_PLAN_SCHEMA_VERSION),
    run: z.object({ namespace: z.string().min(1), name: z.string().min(1), uid: z.string().optional() }).strict(),
    round: z.int().min(0).max(9999).describe("0-based round index."),
    newSlices: z.array(z.string().min(1)).min(1).describe("Slices that arrived for this round."),
    replay: z.enum(REPLAY_STRATEGIES),
    model: z
      .object({
        architecture: z.string().min(1).describe("open_clip model name or a config shipped with the trainer."),
        initCheckpoint: s3Uri
          .nullable()
          .describe(
            "Weights to warm-start from (weights only: fresh optimizer, new LR cycle); null trains from scratch.",
          ),
      })
      .strict(),
    data: z
      .object({
        sources: z.array(mixtureSource).min(1),
        samples: z
          .int()
          .min(1)
          .describe("Total sample budget of the round: the trainer sees exactly this many samples."),
        maxSkippedFraction: z
          .number()
          .min(0)
          .max(1)
          .optional()
          .describe(
            "Bad samples (undecodable image, no caption, caption not UTF-8) the trainer skips, as a fraction of samples; more fails the round (exit 2). Absent: 0.01.",
          ),
      })
      .strict(),
    optimizer: z
      .object({
        lr: z.number().gt(0),
        weightDecay: z.number().min(0),
        warmupSteps: z.int().min(0),
        batchSize: z.int().min(1),
        precision: z.enum(PRECISIONS),
        schedule: z
          .enum(LR_SCHEDULES)
          .optional()
          .describe("Cosine (absent: plans written before the field) or ConstantThenAnneal."),
        annealFraction: z
          .number()
          .gt(0)
          .max(1)
          .optional()
          .describe("ConstantThenAnneal: the share of the steps that anneal the lr linearly to 0. Absent: 0.2."),
        state: z
          .enum(OPTIMIZER_STATES)
          .optional()
          .describe(
            "Reset (absent): a fresh AdamW. Carry: the trainer saves optimizer.pt beside checkpoint.pt, and a warm-started round loads the optimizer.pt beside its initCheckpoint.",
          ),
      })
      .strict(),
    merge: z
      .object({
        mode: z.enum(["Interpolate", "EMA"]),
        coefficient: z
          .number()
          .gt(0)
          .max(1)
          .describe("Weight of the trained weights: merged = (1 - c) x initCheckpoint + c x trained."),
      })
      .strict()
      .optional()
      .describe(
        "Weight-space merging after training, before export (warm-started rounds only): checkpoint.pt and the encoders are the merge, raw/ beside them the trained weights. EMA trains from the raw/checkpoint.pt beside initCheckpoint when there is one. Absent: no merge.",
      ),
    output: z.object({ uri: s3Uri.describe("Round prefix, ending in '/': s3://<artifacts>/rounds/<NNNN>/.") }).strict(),
    checkpointIntervalMinutes: z.number().gt(0),
    seed: z.int().min(0).describe("Seed for model init and data sampling."),
    s3: z
      .object({
        region: z.string().min(1),
        endpoint: httpUrl
          .nullable()
          .describe("Custom endpoint, null for AWS. Credentials come from the environment, never the plan."),
        addressingStyle: z
          .enum(S3_ADDRESSING_STYLES)
          .optional()
          .describe(
            "Path or VirtualHost. Absent in plans written before the field: Path with an endpoint, else VirtualHost.",
          ),
      })
      .strict(),
  })
  .strict()
  .describe("RoundPlan: one training round of a ContinualClipRun.");
export type RoundPlan = z.infer<typeof roundPlan>;
