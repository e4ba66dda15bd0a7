// Eval pack format, version 1 (adr/0003-eval-pack-format.md, docs/evaluation.md): the only place
// its shape is written. Packs are built by the trainer image's make-evalpack and read here with no
// Python: images are already resized and centre-cropped to uint8 NCHW (the mean/std is applied at
// load time), captions and class prompts are already tokenised with the trainer's tokenizer.
import { z } from "zod";

export const PACK_MANIFEST = "pack.json";
export const PACK_FORMAT = "ticclip.evalpack";
export const PACK_FORMAT_VERSION = 1;

export const TENSOR_DTYPES = ["uint8", "int32", "int64", "float32"] as const;
export type TensorDtype = (typeof TENSOR_DTYPES)[number];
export const DTYPE_BYTES: Record<TensorDtype, number> = { uint8: 1, int32: 4, int64: 8, float32: 4 };

/** A file name inside the pack folder: no folders, no dot files. */
const packFile = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, "a file name inside the pack folder");

export const tensorShard = z.object({
  file: packFile,
  rows: z.int().min(1).describe("Rows (first dimension) stored in this file."),
  bytes: z.int().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "lowercase hex sha256"),
});

/**
 * A row-major little-endian tensor split along its first dimension into one or more raw files,
 * so a large pack streams shard by shard instead of being held in memory at once.
 */
export const tensorSpec = z.object({
  dtype: z.enum(TENSOR_DTYPES),
  shape: z.array(z.int().min(1)).min(1).max(4),
  shards: z.array(tensorShard).min(1),
});
export type TensorSpec = z.infer<typeof tensorSpec>;

/** Image preprocessing and tokenizer, in the same shape as the trainer's model.json. */
export const preprocessingSpec = z.object({
  imageSize: z.int().min(1).max(4096),
  resize: z
    .object({ mode: z.literal("shortest"), interpolation: z.literal("bicubic"), crop: z.literal("center") })
    .describe("Already applied by make-evalpack."),
  mean: z.tuple([z.number(), z.number(), z.number()]),
  std: z.tuple([z.number().gt(0), z.number().gt(0), z.number().gt(0)]),
  tokenizer: z
    .object({
      name: z.string().min(1),
      contextLength: z.int().min(1).max(4096),
      sotTokenId: z.int().min(0).optional(),
      eotTokenId: z.int().min(0).optional(),
      padTokenId: z.int().min(0).optional(),
      vocabSize: z.int().min(1).optional(),
    })
    .loose(),
});
export type PreprocessingSpec = z.infer<typeof preprocessingSpec>;

const common = {
  format: z.literal(PACK_FORMAT),
  formatVersion: z.literal(PACK_FORMAT_VERSION),
  name: z.string().min(1).max(128),
  createdAt: z.iso.datetime({ offset: true }),
  source: z.string().max(1024).optional().describe("Where the pack was built from (for people, not parsed)."),
  preprocessing: preprocessingSpec,
  images: tensorSpec.describe("uint8 [N, 3, imageSize, imageSize], resized and centre-cropped, RGB."),
};

export const retrievalPack = z.object({
  kind: z.literal("retrieval"),
  sliceId: z.string().optional(),
  ...common,
  texts: tensorSpec.describe("int32 or int64 [M, contextLength]: tokenised captions."),
  textImage: tensorSpec.describe(
    "int32 [M]: index of the image each caption describes (every image has at least one).",
  ),
});

export const zeroShotPack = z.object({
  kind: z.literal("zeroShot"),
  ...common,
  labels: tensorSpec.describe("int32 [N]: class index of each image."),
  classNames: z.array(z.string().min(1)).min(2),
  templates: z.array(z.string().includes("{c}")).min(1).describe("Prompt templates; {c} is the class name."),
  prompts: tensorSpec.describe("int32 or int64 [classes * templates, contextLength], class-major: row c*T + t."),
});

export const evalPackManifest = z.discriminatedUnion("kind", [retrievalPack, zeroShotPack]);
export type EvalPackManifest = z.infer<typeof evalPackManifest>;
export type RetrievalPackManifest = z.infer<typeof retrievalPack>;
export type ZeroShotPackManifest = z.infer<typeof zeroShotPack>;
