// The slice contract: <source.prefix><sliceId>/manifest.json, written by the data producer (the
// trainer image's make-slice tool writes exactly this shape) before the _SUCCESS marker.
import { z } from "zod";

export const MANIFEST_NAME = "manifest.json";
export const SUCCESS_MARKER = "_SUCCESS";

/**
 * A slice id is one S3 path segment made of the characters S3 documents as safe
 * ([A-Za-z0-9], '-', '_', '.'), starting with a letter or digit, at most 128 characters.
 * '.' and '..' are excluded by the first-character rule.
 */
export const SLICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export const sliceId = z
  .string()
  .regex(SLICE_ID_PATTERN, "a slice id: 1-128 of [A-Za-z0-9._-], starting with a letter or digit");

/** Why `id` is not a usable slice id, or undefined when it is. */
export function sliceIdProblem(id: string): string | undefined {
  if (id.length === 0) return "empty slice id";
  if (id.length > 128) return `slice id is ${id.length} characters long, the limit is 128`;
  if (!SLICE_ID_PATTERN.test(id)) {
    return `slice id ${JSON.stringify(id)} is not a valid S3 path segment: use [A-Za-z0-9._-], starting with a letter or digit`;
  }
  return undefined;
}

/**
 * Time order of slices: the order in which S3 lists their folders, i.e. byte order of
 * `<id>/`. For ids where neither is a prefix of the other (2016 < 2017-03 < 2017-04, ISO
 * dates) this is plain lexicographic order. When one id is a prefix of another, the folder
 * order decides: `2017-03/` sorts before `2017/` because '-' < '/'. Discovery's StartAfter
 * cursor relies on this being S3's order, so it is the one order used everywhere.
 */
export function compareSliceIds(a: string, b: string): number {
  const x = a + "/";
  const y = b + "/";
  // Valid ids are ASCII, so UTF-16 code unit order is UTF-8 byte order (S3's listing order).
  return x < y ? -1 : x > y ? 1 : 0;
}

/** A key relative to the slice folder: no leading '/', no '.' or '..' segments, no empty segments. */
const relativeKey = z
  .string()
  .min(1)
  .max(900)
  .refine(
    (k) =>
      !k.startsWith("/") &&
      k.split("/").every((s, i, all) => (s !== "" || i === all.length - 1) && s !== "." && s !== ".."),
    "a key relative to the slice folder (no leading '/', no '.', '..' or empty segments)",
  );

export const manifestShard = z.object({
  key: relativeKey
    .refine((k) => !k.endsWith("/"), "a shard key, not a folder")
    .describe("Shard key relative to the slice folder, e.g. shard-00000.tar."),
  samples: z.int().min(1).describe("Image-text pairs in the shard."),
  bytes: z.int().min(0).describe("Size of the shard object in bytes."),
});

/** The .json field a sample's caption is read from when it has no .txt (img2dataset writes both). */
export const jsonCaptionField = z
  .string()
  .min(1)
  .max(128)
  .describe("Field of a sample's .json holding its caption, for samples without a .txt member (default caption).");

/** The held-out split of a slice whose shards also hold it (a slice made in place from existing shards). */
export const heldOutFraction = z
  .number()
  .gt(0)
  .lt(1)
  .describe(
    "Samples whose key hashes below this fraction (first 8 bytes of sha256(key) over 2^64) are the slice's held-out split: its eval pack, never trained on. The shards' samples counts exclude them.",
  );

export const sliceManifest = z
  .object({
    sliceId: sliceId.describe("Must equal the slice's folder name."),
    createdAt: z.iso.datetime({ offset: true }).describe("RFC 3339 time the slice was produced."),
    numSamples: z.int().min(1).describe("Total samples: the sum of the shards' samples."),
    shards: z.array(manifestShard).min(1).describe("WebDataset shards of the slice."),
    eval: z
      .object({
        retrieval: relativeKey
          .refine((k) => k.endsWith("/"), "a folder ending in '/'")
          .optional()
          .describe("Held-out retrieval pack folder, relative to the slice folder, e.g. eval/."),
      })
      .optional()
      .describe("Optional held-out evaluation packs of this slice."),
    jsonCaptionField: jsonCaptionField.optional(),
    heldOutFraction: heldOutFraction.optional(),
  })
  .describe("manifest.json of one data slice.");

export type SliceManifest = z.infer<typeof sliceManifest>;
export type ManifestShard = z.infer<typeof manifestShard>;
