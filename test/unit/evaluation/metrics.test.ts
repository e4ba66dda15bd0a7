import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { classEmbeddings, firstNonFinite, retrievalMetrics, zeroShotMetrics, type Embeddings } from "../../../operator/evaluation/metrics.ts";

const emb = (rows: number[][]): Embeddings => ({ data: Float32Array.from(rows.flat()), rows: rows.length, dim: rows[0]!.length });
const oneHot = (n: number, i: number) => Array.from({ length: n }, (_, k) => (k === i ? 1 : 0));
const ident = (n: number) => Array.from({ length: n }, (_, i) => oneHot(n, i));
const range = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

describe("retrievalMetrics", () => {
  test("perfect embeddings give recall 1 at every K in both directions", () => {
    const m = retrievalMetrics(emb(ident(4)), emb(ident(4)), range(4), [1, 5]);
    assert.deepEqual(m, {
      imageToTextRecallAt1: 1,
      textToImageRecallAt1: 1,
      imageToTextRecallAt5: 1,
      textToImageRecallAt5: 1,
      meanRecallAt1: 1,
    });
  });

  test("reversed pairing: only the self-paired middle item is found at R@1", () => {
    const strictlyReversed = retrievalMetrics(emb(ident(5)), emb(ident(5).reverse()), range(5), [1, 4, 5]);
    // Only the middle pair (2 <-> 2) still matches; everyone else's right answer scores 0 and ties
    // with three other zeros and loses to one 1.
    assert.equal(strictlyReversed.imageToTextRecallAt1, 1 / 5);
    assert.equal(strictlyReversed.textToImageRecallAt1, 1 / 5);
    assert.equal(strictlyReversed.imageToTextRecallAt4, 1 / 5);
    assert.equal(strictlyReversed.imageToTextRecallAt5, 1);
    assert.equal(strictlyReversed.meanRecallAt1, 1 / 5);
  });

  test("ties count against the model: identical embeddings score 0 until K covers every candidate", () => {
    const same = emb(Array.from({ length: 4 }, () => [0.6, 0.8]));
    const m = retrievalMetrics(same, same, range(4), [1, 3, 4]);
    assert.equal(m.imageToTextRecallAt1, 0);
    assert.equal(m.textToImageRecallAt3, 0);
    assert.equal(m.imageToTextRecallAt4, 1);
    assert.equal(m.textToImageRecallAt4, 1);
    assert.equal(m.meanRecallAt1, 0);
  });

  test("an image with several captions counts a hit when any of them is in the top K", () => {
    const images = emb(ident(2));
    const texts = emb([[1, 0], [0.2, 0.9], [0, 1]]); // captions 0 and 1 describe image 0
    const m = retrievalMetrics(images, texts, Int32Array.from([0, 0, 1]), [1]);
    assert.equal(m.imageToTextRecallAt1, 1);
    // caption 1 is closer to image 1 (0.9) than to its own (0.2)
    assert.equal(m.textToImageRecallAt1, 2 / 3);
  });

  test("rejects a caption pointing outside the images and an image without a caption", () => {
    assert.throws(() => retrievalMetrics(emb(ident(2)), emb(ident(2)), Int32Array.from([0, 2]), [1]), /outside \[0, 2\)/);
    assert.throws(() => retrievalMetrics(emb(ident(2)), emb(ident(2)), Int32Array.from([0, 0]), [1]), /image 1 has no caption/);
  });

  test("recall is monotone in K and within [0, 1] (property)", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 4 }), fc.integer(), (n, d, seed) => {
        let s = seed;
        const rnd = () => ((s = (s * 1103515245 + 12345) | 0), ((s >>> 8) & 0xffff) / 0xffff - 0.5);
        const images = emb(Array.from({ length: n }, () => Array.from({ length: d }, rnd)));
        const texts = emb(Array.from({ length: n }, () => Array.from({ length: d }, rnd)));
        const m = retrievalMetrics(images, texts, range(n), [1, 2, 3, n]);
        for (const dir of ["imageToText", "textToImage"]) {
          const r = [1, 2, 3, n].map((k) => m[`${dir}RecallAt${k}`]!);
          for (const v of r) assert.ok(v >= 0 && v <= 1);
          for (let i = 1; i < r.length - 1; i++) assert.ok(r[i]! >= r[i - 1]!);
          assert.equal(m[`${dir}RecallAt${n}`], 1);
        }
      }),
    );
  });
});

describe("zeroShotMetrics", () => {
  test("template ensembling averages normalised prompt embeddings per class", () => {
    // class 0 templates point at +x and +y, class 1 at -x and -y: class 0's weight is (1,1)/sqrt2
    const prompts = emb([[2, 0], [0, 5], [-1, 0], [0, -3]]);
    const w = classEmbeddings(prompts, 2, 2);
    assert.ok(Math.abs(w.data[0]! - Math.SQRT1_2) < 1e-6 && Math.abs(w.data[1]! - Math.SQRT1_2) < 1e-6);
    assert.ok(Math.abs(w.data[2]! + Math.SQRT1_2) < 1e-6 && Math.abs(w.data[3]! + Math.SQRT1_2) < 1e-6);
  });

  test("perfect, wrong and tied classifiers", () => {
    const classes = emb(ident(6));
    const images = emb(ident(6));
    assert.deepEqual(zeroShotMetrics(images, classes, range(6)), { top1: 1, top5: 1 });
    // each image labelled with the next class: its true class scores 0, tied with 4 others, behind 1
    const shifted = Int32Array.from({ length: 6 }, (_, i) => (i + 1) % 6);
    assert.deepEqual(zeroShotMetrics(images, classes, shifted), { top1: 0, top5: 0 });
    const same = emb(Array.from({ length: 6 }, () => [1, 0, 0, 0, 0, 0]));
    assert.deepEqual(zeroShotMetrics(images, same, range(6)), { top1: 0, top5: 0 });
  });

  test("top5 counts the true class among the five best", () => {
    const classes = emb([[1, 0], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.5, 0.5], [-1, 0]]);
    const images = emb([[1, 0], [1, 0]]);
    assert.deepEqual(zeroShotMetrics(images, classes, Int32Array.from([4, 5])), { top1: 0, top5: 0.5 });
  });
});

test("firstNonFinite finds NaN and infinities", () => {
  assert.equal(firstNonFinite(emb([[1, 2], [3, 4]])), -1);
  assert.equal(firstNonFinite(emb([[1, 2], [NaN, 4]])), 2);
  assert.equal(firstNonFinite(emb([[1, Infinity]])), 1);
});
