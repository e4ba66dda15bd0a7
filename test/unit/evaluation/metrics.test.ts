import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { createSimilarityKernel, type SimilarityKernel } from "../../../operator/evaluation/kernel.ts";
import {
  classEmbeddings,
  firstNonFinite,
  groupIdenticalTexts,
  pickRows,
  retrievalMetrics,
  zeroShotMetrics,
  type Embeddings,
} from "../../../operator/evaluation/metrics.ts";

const emb = (rows: number[][]): Embeddings => ({
  data: Float32Array.from(rows.flat()),
  rows: rows.length,
  dim: rows[0]!.length,
});
const oneHot = (n: number, i: number) => Array.from({ length: n }, (_, k) => (k === i ? 1 : 0));
const ident = (n: number) => Array.from({ length: n }, (_, i) => oneHot(n, i));
const range = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

let kernel: SimilarityKernel;
before(async () => {
  kernel = await createSimilarityKernel(1);
});
after(() => kernel.release());

/** Every caption a distinct text. */
const distinct = (images: Embeddings, texts: Embeddings, textImage: Int32Array, ks: number[], blockBytes?: number) =>
  retrievalMetrics(kernel, { images, texts, textImage, textGroup: range(textImage.length) }, ks, blockBytes).then(
    (r) => r.metrics,
  );

/** The definition, literally: every caption a candidate, scores in float64 (exact for small integer embeddings). */
function reference(images: number[][], groupRows: number[][], textImage: number[], textGroup: number[], k: number) {
  const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0);
  const groupsOf = (i: number) => new Set(textGroup.filter((_, c) => textImage[c] === i));
  let i2t = 0;
  images.forEach((img, i) => {
    const mine = groupsOf(i);
    const scores = textGroup.map((g) => dot(img, groupRows[g]!));
    const best = Math.max(...scores.filter((_, c) => mine.has(textGroup[c]!)));
    if (scores.filter((s, c) => !mine.has(textGroup[c]!) && s >= best).length < k) i2t++;
  });
  let t2i = 0;
  textGroup.forEach((g) => {
    const scores = images.map((img) => dot(img, groupRows[g]!));
    const isRight = (i: number) => groupsOf(i).has(g);
    const best = Math.max(...scores.filter((_, i) => isRight(i)));
    if (scores.filter((s, i) => !isRight(i) && s >= best).length < k) t2i++;
  });
  return { i2t: i2t / images.length, t2i: t2i / textGroup.length };
}

describe("retrievalMetrics", () => {
  test("perfect embeddings give recall 1 at every K in both directions", async () => {
    const m = await distinct(emb(ident(4)), emb(ident(4)), range(4), [1, 5]);
    assert.deepEqual(m, {
      imageToTextRecallAt1: 1,
      textToImageRecallAt1: 1,
      imageToTextRecallAt5: 1,
      textToImageRecallAt5: 1,
      meanRecallAt1: 1,
    });
  });

  test("reversed pairing: only the self-paired middle item is found at R@1", async () => {
    const m = await distinct(emb(ident(5)), emb(ident(5).reverse()), range(5), [1, 4, 5]);
    // Only the middle pair (2 <-> 2) still matches; everyone else's right answer scores 0 and ties
    // with three other zeros and loses to one 1.
    assert.equal(m.imageToTextRecallAt1, 1 / 5);
    assert.equal(m.textToImageRecallAt1, 1 / 5);
    assert.equal(m.imageToTextRecallAt4, 1 / 5);
    assert.equal(m.imageToTextRecallAt5, 1);
    assert.equal(m.meanRecallAt1, 1 / 5);
  });

  test("ties between different texts count against the model: a collapsed model scores 0 until K covers every candidate", async () => {
    const same = emb(Array.from({ length: 4 }, () => [0.6, 0.8]));
    const m = await distinct(same, same, range(4), [1, 3, 4]);
    assert.equal(m.imageToTextRecallAt1, 0);
    assert.equal(m.textToImageRecallAt3, 0);
    assert.equal(m.imageToTextRecallAt4, 1);
    assert.equal(m.textToImageRecallAt4, 1);
    assert.equal(m.meanRecallAt1, 0);
  });

  test("identical texts are right for every image they describe: ties among them never count against the model", async () => {
    // Four images, captions "a", "a", "b", "b" (token-identical pairs). Images 0 and 1 embed like "a".
    const images = emb([
      [1, 0],
      [1, 0],
      [0, 1],
      [0, 1],
    ]);
    const texts = emb([
      [1, 0],
      [0, 1],
    ]); // the two distinct texts
    const { metrics, chance } = await retrievalMetrics(
      kernel,
      { images, texts, textImage: range(4), textGroup: Int32Array.from([0, 0, 1, 1]) },
      [1, 2],
    );
    // Pessimistic on caption instances these would be 0.5; by text identity every query is a hit.
    assert.equal(metrics.imageToTextRecallAt1, 1);
    assert.equal(metrics.textToImageRecallAt1, 1);
    assert.equal(metrics.meanRecallAt1, 1);
    // Chance: two of four captions (and two of four images) are right for every query.
    assert.equal(chance.imageToTextRecallAt1, 0.5);
    assert.ok(Math.abs(chance.imageToTextRecallAt2! - 5 / 6) < 1e-12);
    assert.equal(chance.textToImageRecallAt1, 0.5);
  });

  test("a wrong text repeated ahead of the right one counts once per caption", async () => {
    // Image 0's right text scores 0.5; the wrong text "b" (3 captions) scores 1 and so takes ranks 1-3.
    const images = emb([
      [1, 0.5],
      [1, 0],
    ]);
    const texts = emb([
      [0, 1],
      [1, 0],
    ]); // text 0 = image 0's caption, text 1 = "b"
    const { metrics } = await retrievalMetrics(
      kernel,
      { images, texts, textImage: Int32Array.from([0, 1, 1, 1]), textGroup: Int32Array.from([0, 1, 1, 1]) },
      [1, 3, 4],
    );
    assert.equal(metrics.imageToTextRecallAt1, 0.5);
    assert.equal(metrics.imageToTextRecallAt3, 0.5);
    assert.equal(metrics.imageToTextRecallAt4, 1);
  });

  test("an image with several captions counts a hit when any of them is in the top K", async () => {
    const images = emb(ident(2));
    const texts = emb([
      [1, 0],
      [0.2, 0.9],
      [0, 1],
    ]); // captions 0 and 1 describe image 0
    const m = await distinct(images, texts, Int32Array.from([0, 0, 1]), [1]);
    assert.equal(m.imageToTextRecallAt1, 1);
    // caption 1 is closer to image 1 (0.9) than to its own (0.2)
    assert.equal(m.textToImageRecallAt1, 2 / 3);
  });

  test("rejects a caption pointing outside the images and an image without a caption", async () => {
    await assert.rejects(distinct(emb(ident(2)), emb(ident(2)), Int32Array.from([0, 2]), [1]), /outside \[0, 2\)/);
    await assert.rejects(
      distinct(emb(ident(2)), emb(ident(2)), Int32Array.from([0, 0]), [1]),
      /image 1 has no caption/,
    );
  });

  test("chance level of one caption per image is K / N", async () => {
    const { chance } = await retrievalMetrics(
      kernel,
      { images: emb(ident(8)), texts: emb(ident(8)), textImage: range(8), textGroup: range(8) },
      [1, 5],
    );
    assert.ok(Math.abs(chance.imageToTextRecallAt1! - 1 / 8) < 1e-12);
    assert.ok(Math.abs(chance.textToImageRecallAt5! - 5 / 8) < 1e-12);
  });

  test("equals the definition computed literally, at every block size (property)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 7 }),
        fc.integer({ min: 1, max: 6 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 0, max: 2 ** 30 }),
        async (n, groups, dim, seed) => {
          let s = seed;
          const rnd = (m: number) => {
            s = (s * 1103515245 + 12345) & 0x7fffffff;
            return s % m;
          };
          // Small integers: dot products are exact, so ties are real ties in both implementations.
          const imageRows = Array.from({ length: n }, () => Array.from({ length: dim }, () => rnd(3) - 1));
          const groupRows = Array.from({ length: groups }, () => Array.from({ length: dim }, () => rnd(3) - 1));
          const textImage: number[] = [];
          const textGroup: number[] = [];
          for (let i = 0; i < n; i++) {
            for (let c = 0, m = 1 + rnd(2); c < m; c++) {
              textImage.push(i);
              textGroup.push(rnd(groups));
            }
          }
          const used = [...new Set(textGroup)].sort((a, b) => a - b);
          const input = {
            images: emb(imageRows),
            texts: emb(used.map((g) => groupRows[g]!)),
            textImage: Int32Array.from(textImage),
            textGroup: Int32Array.from(textGroup, (g) => used.indexOf(g)),
          };
          for (const blockBytes of [4, 4 * 3 * groups, 1 << 20]) {
            const { metrics } = await retrievalMetrics(kernel, input, [1, 2, 3], blockBytes);
            for (const k of [1, 2, 3]) {
              const want = reference(imageRows, groupRows, textImage, textGroup, k);
              assert.equal(metrics[`imageToTextRecallAt${k}`], want.i2t, `i2t@${k}`);
              assert.equal(metrics[`textToImageRecallAt${k}`], want.t2i, `t2i@${k}`);
            }
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe("groupIdenticalTexts", () => {
  test("token-identical rows share a group; pickRows keeps one row per group", () => {
    const tokens = Int32Array.from([1, 5, 0, 1, 6, 0, 1, 5, 0]);
    const g = groupIdenticalTexts(tokens, 3);
    assert.deepEqual([...g.groupOf], [0, 1, 0]);
    assert.deepEqual([...g.firstRow], [0, 1]);
    assert.deepEqual([...pickRows(tokens, 3, g.firstRow)], [1, 5, 0, 1, 6, 0]);
  });
});

describe("zeroShotMetrics", () => {
  test("template ensembling averages normalised prompt embeddings per class", () => {
    // class 0 templates point at +x and +y, class 1 at -x and -y: class 0's weight is (1,1)/sqrt2
    const prompts = emb([
      [2, 0],
      [0, 5],
      [-1, 0],
      [0, -3],
    ]);
    const w = classEmbeddings(prompts, 2, 2);
    assert.ok(Math.abs(w.data[0]! - Math.SQRT1_2) < 1e-6 && Math.abs(w.data[1]! - Math.SQRT1_2) < 1e-6);
    assert.ok(Math.abs(w.data[2]! + Math.SQRT1_2) < 1e-6 && Math.abs(w.data[3]! + Math.SQRT1_2) < 1e-6);
  });

  test("perfect, wrong and tied classifiers", async () => {
    const classes = emb(ident(6));
    const images = emb(ident(6));
    assert.deepEqual((await zeroShotMetrics(kernel, images, classes, range(6))).metrics, { top1: 1, top5: 1 });
    // each image labelled with the next class: its true class scores 0, tied with 4 others, behind 1
    const shifted = Int32Array.from({ length: 6 }, (_, i) => (i + 1) % 6);
    assert.deepEqual((await zeroShotMetrics(kernel, images, classes, shifted)).metrics, { top1: 0, top5: 0 });
    const same = emb(Array.from({ length: 6 }, () => [1, 0, 0, 0, 0, 0]));
    assert.deepEqual((await zeroShotMetrics(kernel, images, same, range(6), 4)).metrics, { top1: 0, top5: 0 });
  });

  test("top5 counts the true class among the five best; chance is K / classes", async () => {
    const classes = emb([
      [1, 0],
      [0.9, 0.1],
      [0.8, 0.2],
      [0.7, 0.3],
      [0.6, 0.4],
      [0.5, 0.5],
      [-1, 0],
    ]);
    const images = emb([
      [1, 0],
      [1, 0],
    ]);
    const r = await zeroShotMetrics(kernel, images, classes, Int32Array.from([4, 5]));
    assert.deepEqual(r.metrics, { top1: 0, top5: 0.5 });
    assert.ok(Math.abs(r.chance.top1 - 1 / 7) < 1e-12 && Math.abs(r.chance.top5 - 5 / 7) < 1e-12);
  });
});

test("firstNonFinite finds NaN and infinities", () => {
  assert.equal(
    firstNonFinite(
      emb([
        [1, 2],
        [3, 4],
      ]),
    ),
    -1,
  );
  assert.equal(
    firstNonFinite(
      emb([
        [1, 2],
        [NaN, 4],
      ]),
    ),
    2,
  );
  assert.equal(firstNonFinite(emb([[1, Infinity]])), 1);
});
