// Promotion documents in S3 (docs/design.md, S3 layout): <promotion.prefix>v<N>/version.json, written
// last inside an immutable version folder, and <promotion.prefix><alias>.json, the pointer readers
// follow, written last of all.
import { z } from "zod";
import { EVAL_JSON } from "./eval-result.ts";

export const VERSION_JSON = "version.json";
export const PROMOTION_SCHEMA_VERSION = 1;

/** Files copied from a round folder into a version; the required ones make a servable model. */
export const PROMOTED_FILES = [
  { name: "image_encoder.onnx", key: "imageEncoder", required: true },
  { name: "text_encoder.onnx", key: "textEncoder", required: true },
  { name: "model.json", key: "modelJson", required: true },
  { name: "checkpoint.pt", key: "checkpoint", required: true },
  { name: EVAL_JSON, key: "eval", required: false },
  { name: "train_summary.json", key: "trainSummary", required: false },
] as const;

const runRef = z.object({ namespace: z.string(), name: z.string(), uid: z.string() });

export const versionManifest = z.object({
  schemaVersion: z.literal(PROMOTION_SCHEMA_VERSION),
  version: z.int().min(1),
  round: z.int().min(0),
  run: runRef,
  /** The round folder the files were copied from. */
  sourceUri: z.string(),
  files: z.array(z.object({ name: z.string(), size: z.int().min(0) })),
  metrics: z.record(z.string(), z.number()),
  createdAt: z.string(),
});
export type VersionManifest = z.infer<typeof versionManifest>;

export const aliasPointer = z.object({
  schemaVersion: z.literal(PROMOTION_SCHEMA_VERSION),
  alias: z.string(),
  version: z.int().min(1),
  round: z.int().min(0),
  run: runRef,
  /** s3://<promotion bucket>/<prefix>v<N>/ */
  uri: z.string(),
  uris: z.record(z.string(), z.string()),
  metrics: z.record(z.string(), z.number()),
  promotedAt: z.string(),
  /** True when spec.promotion.pinVersion put the alias here (a rollback). */
  pinned: z.boolean(),
});
export type AliasPointer = z.infer<typeof aliasPointer>;
