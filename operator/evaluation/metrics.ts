// Retrieval and zero-shot metrics on embeddings. No I/O: the similarity kernel is passed in.
//
// Hits (docs/evaluation.md): a caption is right for an image when its text (token ids) is identical
// to one of the image's own captions, so identical texts of other images never count against the
// model (synthetic and web packs repeat captions). Between genuinely different texts ties count
// against the model: a query's rank is the number of wrong candidates scoring at least as high as
// its best right one, so a model that maps everything to one point gets R@1 = 0, not 1.
//
// Scores come from the kernel in blocks of image rows (peak memory one block, never N x M), each
// (image, text) score computed once and used for both directions, so ties compare identical bits.
import { atK, type RetrievalMetric, ZERO_SHOT_TOP_K, type ZeroShotMetric } from "../api/gate-metrics.ts";
import type { Embeddings, SimilarityKernel } from "./kernel.ts";

export type { Embeddings };

export type RetrievalMetrics = Record<string, number> & Record<RetrievalMetric, number>;
export type ZeroShotMetrics = Record<ZeroShotMetric, number>;
/** Metrics with what a model ranking candidates at random would score on the same pack. */
export type Scored<T> = { metrics: T; chance: T };

/** Bytes of scores held at once; a block is as many query rows as fit. */
export const DEFAULT_BLOCK_BYTES = 32 * 2 ** 20;

/** Index of the first non-finite value, or -1. */
export function firstNonFinite(e: Embeddings): number {
  for (let i = 0; i < e.data.length; i++) if (!Number.isFinite(e.data[i]!)) return i;
  return -1;
}

/** Scales each row to unit L2 norm (rows of zeros stay zero). */
export function normalizeRows(e: Embeddings): Embeddings {
  const out = new Float32Array(e.data.length);
  for (let r = 0; r < e.rows; r++) {
    const o = r * e.dim;
    let sq = 0;
    for (let k = 0; k < e.dim; k++) sq += e.data[o + k]! * e.data[o + k]!;
    const n = Math.sqrt(sq);
    for (let k = 0; k < e.dim; k++) out[o + k] = n > 0 ? e.data[o + k]! / n : 0;
  }
  return { data: out, rows: e.rows, dim: e.dim };
}

/** Identical token rows share a group: `groupOf[row]`, and the first row of each group. */
export type TextGroups = { groupOf: Int32Array; firstRow: Int32Array };

export function groupIdenticalTexts(tokens: Int32Array, rows: number): TextGroups {
  const per = rows ? tokens.length / rows : 0;
  const seen = new Map<string, number>();
  const groupOf = new Int32Array(rows);
  const first: number[] = [];
  for (let r = 0; r < rows; r++) {
    const row = tokens.subarray(r * per, (r + 1) * per);
    // Little-endian bytes of the row as a key: exact, and cheap at pack scale (10k x 77 ids).
    const key = Buffer.from(row.buffer, row.byteOffset, row.byteLength).toString("latin1");
    let g = seen.get(key);
    if (g === undefined) {
      g = first.length;
      seen.set(key, g);
      first.push(r);
    }
    groupOf[r] = g;
  }
  return { groupOf, firstRow: Int32Array.from(first) };
}

/** Keeps only the given rows of a row-major token matrix. */
export function pickRows(tokens: Int32Array, rows: number, pick: Int32Array): Int32Array {
  const per = rows ? tokens.length / rows : 0;
  const out = new Int32Array(pick.length * per);
  for (const [i, r] of pick.entries()) out.set(tokens.subarray(r * per, (r + 1) * per), i * per);
  return out;
}

function blockRows(candidates: number, total: number, blockBytes: number): number {
  return Math.max(2, Math.min(total, Math.floor(blockBytes / 4 / Math.max(1, candidates))));
}

/** P(at least one of `right` among `total` candidates is in a random top K). */
function chanceAtK(total: number, right: number, k: number): number {
  let miss = 1;
  for (let j = 0; j < k && miss > 0; j++) miss *= Math.max(0, total - right - j) / (total - j);
  return 1 - miss;
}

export type RetrievalInput = {
  images: Embeddings;
  /** Embeddings of the distinct caption texts (one row per group). */
  texts: Embeddings;
  /** Image each caption describes (an image may have several captions). */
  textImage: Int32Array;
  /** Distinct text of each caption: a row of `texts`. */
  textGroup: Int32Array;
};

/**
 * Image->text and text->image Recall@K over all captions (hits as above). Always reports K=1 (for
 * meanRecallAt1) besides the requested ks. Values are fractions in [0, 1].
 */
export async function retrievalMetrics(
  kernel: SimilarityKernel,
  input: RetrievalInput,
  ks: readonly number[],
  blockBytes = DEFAULT_BLOCK_BYTES,
): Promise<Scored<RetrievalMetrics>> {
  const { images, texts } = input;
  const N = images.rows;
  const G = texts.rows;
  const D = images.dim;
  const { weight, rightStart, right } = rightTexts(input);

  const allK = [...new Set([1, ...ks])].sort((a, b) => a - b);
  const K = allK.at(-1)!;
  const i2tRank = new Float64Array(N); // captions of wrong texts scoring >= the image's best right one
  // text->image, streamed over image blocks: per distinct text its best right image score and its
  // K best wrong image scores (sorted, descending); rank < k iff the k-th best wrong < best right.
  const bestRight = new Float32Array(G).fill(-Infinity);
  const topWrong = new Float32Array(G * K).fill(-Infinity);
  const threshold = new Float32Array(G).fill(-Infinity); // topWrong[g*K + K-1]
  const stamp = new Int32Array(G); // stamp[g] === i + 1: g is a right text of image i

  const step = blockRows(G, N, blockBytes);
  for (let i0 = 0; i0 < N; i0 += step) {
    const b = Math.min(step, N - i0);
    const s = await kernel.scores(images.data.subarray(i0 * D, (i0 + b) * D), b, texts);
    for (let r = 0; r < b; r++) {
      const i = i0 + r;
      const row = r * G;
      let best = -Infinity;
      for (let j = rightStart[i]!; j < rightStart[i + 1]!; j++) {
        const g = right[j]!;
        const v = s[row + g]!;
        stamp[g] = i + 1;
        if (v > best) best = v;
        if (v > bestRight[g]!) bestRight[g] = v;
      }
      let rank = 0;
      for (let g = 0; g < G; g++) {
        const v = s[row + g]!;
        if (stamp[g] === i + 1) continue;
        if (v >= best) rank += weight[g]!;
        if (v > threshold[g]!) {
          const base = g * K;
          let p = K - 1;
          while (p > 0 && topWrong[base + p - 1]! < v) {
            topWrong[base + p] = topWrong[base + p - 1]!;
            p--;
          }
          topWrong[base + p] = v;
          threshold[g] = topWrong[base + K - 1]!;
        }
      }
      i2tRank[i] = rank;
    }
  }

  return recallAtK({ weight, rightStart, right }, allK, K, i2tRank, bestRight, topWrong, input.textImage.length);
}

/**
 * Captions per distinct text (weight), and each image's distinct right texts (CSR: image i's are
 * right[rightStart[i] .. rightStart[i + 1])), with the input's shapes checked.
 */
function rightTexts(input: RetrievalInput): { weight: Int32Array; rightStart: Int32Array; right: Int32Array } {
  const { images, texts, textImage, textGroup } = input;
  const N = images.rows;
  const G = texts.rows;
  const M = textImage.length;
  const D = images.dim;
  if (texts.dim !== D) throw new Error(`image embeddings have dim ${D}, text embeddings ${texts.dim}`);
  if (textGroup.length !== M) throw new Error(`textGroup has ${textGroup.length} entries for ${M} captions`);
  if (N === 0 || M === 0) throw new Error("retrieval needs at least one image and one text");
  const weight = new Int32Array(G);
  const perImage: number[][] = Array.from({ length: N }, () => []);
  for (let c = 0; c < M; c++) {
    const i = textImage[c]!;
    const g = textGroup[c]!;
    if (i < 0 || i >= N) throw new Error(`text ${c} points at image ${i}, outside [0, ${N})`);
    if (g < 0 || g >= G) throw new Error(`text ${c} has text group ${g}, outside [0, ${G})`);
    weight[g]!++;
    if (!perImage[i]!.includes(g)) perImage[i]!.push(g);
  }
  const rightStart = new Int32Array(N + 1);
  perImage.forEach((gs, i) => {
    if (!gs.length) throw new Error(`image ${i} has no caption`);
    rightStart[i + 1] = rightStart[i]! + gs.length;
  });
  return { weight, rightStart, right: Int32Array.from(perImage.flat()) };
}

/**
 * Recall@k for each k, and its chance level, from the streamed pass: image->text hits by each
 * image's rank, text->image hits where a text's k-th best wrong image scores below its best right one.
 */
function recallAtK(
  t: { weight: Int32Array; rightStart: Int32Array; right: Int32Array },
  allK: readonly number[],
  K: number,
  i2tRank: Float64Array,
  bestRight: Float32Array,
  topWrong: Float32Array,
  M: number,
): Scored<RetrievalMetrics> {
  const { weight, rightStart, right } = t;
  const N = i2tRank.length;
  const G = weight.length;
  const imagesWith = new Int32Array(G); // distinct images having each text: right answers of its query
  for (let j = 0; j < right.length; j++) imagesWith[right[j]!]!++;
  const rightCaptions = new Int32Array(N); // captions whose text is one of the image's own
  for (let i = 0; i < N; i++) {
    for (let j = rightStart[i]!; j < rightStart[i + 1]!; j++) rightCaptions[i]! += weight[right[j]!]!;
  }
  const metrics: Record<string, number> = {};
  const chance: Record<string, number> = {};
  for (const k of allK) {
    let i2t = 0;
    let i2tChance = 0;
    for (let i = 0; i < N; i++) {
      if (i2tRank[i]! < k) i2t++;
      i2tChance += chanceAtK(M, rightCaptions[i]!, k);
    }
    let t2i = 0;
    let t2iChance = 0;
    for (let g = 0; g < G; g++) {
      if (!weight[g]) continue;
      if (topWrong[g * K + k - 1]! < bestRight[g]!) t2i += weight[g]!;
      t2iChance += weight[g]! * chanceAtK(N, imagesWith[g]!, k);
    }
    metrics[atK("imageToTextRecallAt", k)] = i2t / N;
    metrics[atK("textToImageRecallAt", k)] = t2i / M;
    chance[atK("imageToTextRecallAt", k)] = i2tChance / N;
    chance[atK("textToImageRecallAt", k)] = t2iChance / M;
  }
  const meanAt1 = (m: Record<string, number>) =>
    (m[atK("imageToTextRecallAt", 1)]! + m[atK("textToImageRecallAt", 1)]!) / 2;
  metrics.meanRecallAt1 = meanAt1(metrics);
  chance.meanRecallAt1 = meanAt1(chance);
  return { metrics: metrics as RetrievalMetrics, chance: chance as RetrievalMetrics };
}

/**
 * Zero-shot classifier weights: per class, the mean of its L2-normalised template embeddings,
 * normalised again (open_clip's build_zero_shot_classifier). `prompts` rows are class-major.
 */
export function classEmbeddings(prompts: Embeddings, classes: number, templates: number): Embeddings {
  if (prompts.rows !== classes * templates)
    throw new Error(`${prompts.rows} prompt embeddings for ${classes} classes x ${templates} templates`);
  const unit = normalizeRows(prompts);
  const D = prompts.dim;
  const sum = new Float32Array(classes * D);
  for (let c = 0; c < classes; c++) {
    for (let t = 0; t < templates; t++) {
      const o = (c * templates + t) * D;
      for (let k = 0; k < D; k++) sum[c * D + k]! += unit.data[o + k]! / templates;
    }
  }
  return normalizeRows({ data: sum, rows: classes, dim: D });
}

/** Top-K accuracy (fractions, each K of ZERO_SHOT_TOP_K) of images against class embeddings, ties against the model. */
export async function zeroShotMetrics(
  kernel: SimilarityKernel,
  images: Embeddings,
  classes: Embeddings,
  labels: Int32Array,
  blockBytes = DEFAULT_BLOCK_BYTES,
): Promise<Scored<ZeroShotMetrics>> {
  const N = images.rows;
  const C = classes.rows;
  const D = images.dim;
  if (classes.dim !== D) throw new Error(`image embeddings have dim ${D}, class embeddings ${classes.dim}`);
  if (labels.length !== N) throw new Error(`${labels.length} labels for ${N} images`);
  if (N === 0) throw new Error("zero-shot needs at least one image");
  labels.forEach((y, i) => {
    if (y < 0 || y >= C) throw new Error(`image ${i} has label ${y}, outside [0, ${C})`);
  });
  const hits: number[] = ZERO_SHOT_TOP_K.map(() => 0);
  const step = blockRows(C, N, blockBytes);
  for (let i0 = 0; i0 < N; i0 += step) {
    const b = Math.min(step, N - i0);
    const s = await kernel.scores(images.data.subarray(i0 * D, (i0 + b) * D), b, classes);
    for (let r = 0; r < b; r++) {
      const y = labels[i0 + r]!;
      const own = s[r * C + y]!;
      let rank = 0;
      for (let c = 0; c < C; c++) if (c !== y && s[r * C + c]! >= own) rank++;
      ZERO_SHOT_TOP_K.forEach((k, i) => {
        if (rank < k) hits[i]!++;
      });
    }
  }
  const byK = (value: (k: number, i: number) => number) =>
    Object.fromEntries(ZERO_SHOT_TOP_K.map((k, i) => [`top${k}`, value(k, i)])) as ZeroShotMetrics;
  return { metrics: byK((_, i) => hits[i]! / N), chance: byK((k) => chanceAtK(C, 1, k)) };
}
