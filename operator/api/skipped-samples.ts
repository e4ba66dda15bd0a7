// A round's skipped samples, as the trainer's train_summary.json records them (skippedSamples) and
// status.rounds[] shows them: the data path skips bad web data and counts it (docs/your-data.md).
import { z } from "zod";

/** Why the trainer's data path skipped a sample (trainer-image data.py, SKIP_REASONS). */
export const SKIP_REASONS = [
  "noImage",
  "noCaption",
  "captionNotUtf8",
  "imageUndecodable",
  "imageTruncated",
  "imageTooLarge",
  "imageMode",
] as const;

/** A round's skipped samples: how many, by reason, against the most spec.trainer.maxSkippedFraction allowed. */
export const skippedSamples = z.object({
  total: z.int().min(0),
  limit: z.int().min(0),
  byReason: z.object(Object.fromEntries(SKIP_REASONS.map((r) => [r, z.int().min(0).optional()]))),
});
export type SkippedSamples = z.infer<typeof skippedSamples>;
