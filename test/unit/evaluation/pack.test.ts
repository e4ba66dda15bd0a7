import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { MemoryObjectStore } from "../../../operator/s3/object-store.ts";
import { manifestProblems, normalizeImages, openPack, readInts } from "../../../operator/evaluation/pack.ts";
import type { EvalPackManifest, PreprocessingSpec, RetrievalPackManifest } from "../../../operator/api/eval-pack.ts";

const pre: PreprocessingSpec = {
  imageSize: 2,
  resize: { mode: "shortest", interpolation: "bicubic", crop: "center" },
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
  tokenizer: { name: "openai-clip-bpe", contextLength: 3 },
};
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

/** A valid 2-image, 3-caption retrieval pack in memory. */
async function pack(store: MemoryObjectStore, uri = "s3://p/pack/"): Promise<EvalPackManifest> {
  const images = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i * 10);
  const texts = new Uint8Array(Int32Array.from([49406, 320, 49407, 49406, 321, 49407, 49406, 49407, 0]).buffer);
  const textImage = new Uint8Array(Int32Array.from([0, 1, 1]).buffer);
  await store.put(uri + "images-00000.u8", images);
  await store.put(uri + "texts.i32", texts);
  await store.put(uri + "text-image.i32", textImage);
  const m: EvalPackManifest = {
    format: "ticclip.evalpack",
    formatVersion: 1,
    kind: "retrieval",
    name: "t",
    createdAt: "2026-01-01T00:00:00Z",
    preprocessing: structuredClone(pre),
    images: {
      dtype: "uint8",
      shape: [2, 3, 2, 2],
      shards: [{ file: "images-00000.u8", rows: 2, bytes: 24, sha256: sha(images) }],
    },
    texts: { dtype: "int32", shape: [3, 3], shards: [{ file: "texts.i32", rows: 3, bytes: 36, sha256: sha(texts) }] },
    textImage: {
      dtype: "int32",
      shape: [3],
      shards: [{ file: "text-image.i32", rows: 3, bytes: 12, sha256: sha(textImage) }],
    },
  };
  await store.put(uri + "pack.json", JSON.stringify(m));
  return m;
}

describe("openPack", () => {
  test("reads a valid pack and its integer tensors", async () => {
    const s = new MemoryObjectStore();
    await pack(s);
    const p = await openPack(s, "s3://p/pack");
    assert.equal(p.uri, "s3://p/pack/");
    assert.deepEqual(
      [...(await readInts(s, p, "textImage", (p.manifest as RetrievalPackManifest).textImage))],
      [0, 1, 1],
    );
  });

  const bad: { name: string; edit: (m: Record<string, any>) => void; want: RegExp }[] = [
    {
      name: "image count disagreeing with the shards",
      edit: (m) => (m.images.shape[0] = 3),
      want: /images: shards hold 2 rows, shape says 3/,
    },
    {
      name: "declared bytes disagreeing with the shape",
      edit: (m) => (m.texts.shards[0].bytes = 40),
      want: /texts: texts\.i32 is declared 40 bytes/,
    },
    {
      name: "captions of the wrong context length",
      edit: (m) => (m.preprocessing.tokenizer.contextLength = 77),
      want: /texts: shape \[3,3\], dimension 1 should be 77/,
    },
    {
      name: "images of another size",
      edit: (m) => (m.preprocessing.imageSize = 4),
      want: /images: shape \[2,3,2,2\], dimension 2 should be 4/,
    },
    {
      name: "a float caption tensor",
      edit: (m) => (m.texts.dtype = "float32"),
      want: /texts: dtype float32, expected int32 or int64/,
    },
    { name: "an unknown format version", edit: (m) => (m.formatVersion = 2), want: /formatVersion/ },
    {
      name: "a file outside the pack folder",
      edit: (m) => (m.texts.shards[0].file = "../x"),
      want: /a file name inside the pack folder/,
    },
  ];
  for (const c of bad) {
    test(`rejects ${c.name}`, async () => {
      const s = new MemoryObjectStore();
      const m = await pack(s);
      c.edit(m);
      await s.put("s3://p/pack/pack.json", JSON.stringify(m));
      await assert.rejects(
        openPack(s, "s3://p/pack/"),
        (e: Error & { reason?: string }) => e.reason === "InvalidEvalPack" && c.want.test(e.message),
      );
    });
  }

  test("reports a missing pack and a changed file", async () => {
    const s = new MemoryObjectStore();
    await assert.rejects(openPack(s, "s3://p/none/"), /no eval pack at s3:\/\/p\/none\/: pack\.json not found/);
    const m = await pack(s);
    await s.put("s3://p/pack/text-image.i32", new Uint8Array(Int32Array.from([0, 1, 0]).buffer));
    const p = await openPack(s, "s3://p/pack/");
    await assert.rejects(
      readInts(s, p, "textImage", (m as RetrievalPackManifest).textImage),
      /text-image\.i32 \(textImage\) has sha256 [0-9a-f]{64}, the manifest says/,
    );
  });

  test("manifestProblems is empty for a valid manifest", async () => {
    assert.deepEqual(manifestProblems(await pack(new MemoryObjectStore())), []);
  });
});

describe("normalizeImages", () => {
  test("applies ((x / 255) - mean) / std per channel in float32", () => {
    const x = Uint8Array.from([0, 255, 128, 7, 0, 255, 128, 7, 0, 255, 128, 7]);
    const out = normalizeImages(x, pre);
    for (let i = 0; i < x.length; i++) {
      const c = Math.floor(i / 4);
      const want = Math.fround(
        Math.fround(Math.fround(x[i]! / 255) - Math.fround(pre.mean[c]!)) / Math.fround(pre.std[c]!),
      );
      assert.equal(out[i], want);
    }
    assert.ok(Math.abs(out[1]! - (1 - 0.48145466) / 0.26862954) < 1e-6);
  });
});
