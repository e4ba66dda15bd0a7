// Retrieval and zero-shot metrics on embeddings. Pure functions, no I/O.
//
// Tie rule (documented in docs/evaluation.md): ties count against the model. A query's rank is the
// number of wrong candidates scoring at least as high as its best right candidate, so a model that
// maps everything to one point gets R@1 = 0, not 1. Scores are computed by one dot() in one order,
// so "as high" is decided on bit-identical numbers.

/** Row-major matrix of `rows` embeddings of length `dim`. */
export type Embeddings = { data: Float32Array; rows: number; dim: number };

export type RetrievalMetrics = Record<string, number> & { meanRecallAt1: number };
export type ZeroShotMetrics = { top1: number; top5: number };

function dot(a: Float32Array, ai: number, b: Float32Array, bi: number, d: number): number {
  let s = 0;
  for (let k = 0; k < d; k++) s += a[ai + k]! * b[bi + k]!;
  return s;
}

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
    const n = Math.sqrt(dot(e.data, o, e.data, o, e.dim));
    for (let k = 0; k < e.dim; k++) out[o + k] = n > 0 ? e.data[o + k]! / n : 0;
  }
  return { data: out, rows: e.rows, dim: e.dim };
}

/**
 * Image->text and text->image Recall@K. `textImage[c]` is the image caption c describes; an image
 * may have several captions (image->text counts a hit when any of them is within the top K).
 * Always reports K=1 (for meanRecallAt1) besides the requested ks. Values are fractions in [0, 1].
 */
export function retrievalMetrics(images: Embeddings, texts: Embeddings, textImage: Int32Array, ks: readonly number[]): RetrievalMetrics {
  const N = images.rows;
  const M = texts.rows;
  const D = images.dim;
  if (texts.dim !== D) throw new Error(`image embeddings have dim ${D}, text embeddings ${texts.dim}`);
  if (textImage.length !== M) throw new Error(`textImage has ${textImage.length} entries for ${M} texts`);
  if (N === 0 || M === 0) throw new Error("retrieval needs at least one image and one text");

  // Score of each caption with its own image, and the best such score per image.
  const own = new Float64Array(M);
  const best = new Float64Array(N).fill(-Infinity);
  for (let c = 0; c < M; c++) {
    const g = textImage[c]!;
    if (g < 0 || g >= N) throw new Error(`text ${c} points at image ${g}, outside [0, ${N})`);
    own[c] = dot(images.data, g * D, texts.data, c * D, D);
    if (own[c]! > best[g]!) best[g] = own[c]!;
  }
  for (let i = 0; i < N; i++) if (best[i] === -Infinity) throw new Error(`image ${i} has no caption`);

  const i2tRank = new Int32Array(N); // wrong captions scoring >= the best right one
  const t2iRank = new Int32Array(M); // wrong images scoring >= the right one
  for (let i = 0; i < N; i++) {
    const io = i * D;
    for (let c = 0; c < M; c++) {
      if (textImage[c] === i) continue;
      const s = dot(images.data, io, texts.data, c * D, D);
      if (s >= best[i]!) i2tRank[i]!++;
      if (s >= own[c]!) t2iRank[c]!++;
    }
  }

  const allK = [...new Set([1, ...ks])].sort((a, b) => a - b);
  const out: Record<string, number> = {};
  for (const k of allK) {
    out[`imageToTextRecallAt${k}`] = fractionBelow(i2tRank, k);
    out[`textToImageRecallAt${k}`] = fractionBelow(t2iRank, k);
  }
  out.meanRecallAt1 = (out.imageToTextRecallAt1! + out.textToImageRecallAt1!) / 2;
  return out as RetrievalMetrics;
}

function fractionBelow(ranks: Int32Array, k: number): number {
  let hits = 0;
  for (const r of ranks) if (r < k) hits++;
  return hits / ranks.length;
}

/**
 * Zero-shot classifier weights: per class, the mean of its L2-normalised template embeddings,
 * normalised again (open_clip's build_zero_shot_classifier). `prompts` rows are class-major.
 */
export function classEmbeddings(prompts: Embeddings, classes: number, templates: number): Embeddings {
  if (prompts.rows !== classes * templates) throw new Error(`${prompts.rows} prompt embeddings for ${classes} classes x ${templates} templates`);
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

/** Top-1 and top-5 accuracy (fractions) of images against class embeddings, ties against the model. */
export function zeroShotMetrics(images: Embeddings, classes: Embeddings, labels: Int32Array): ZeroShotMetrics {
  const N = images.rows;
  const C = classes.rows;
  const D = images.dim;
  if (classes.dim !== D) throw new Error(`image embeddings have dim ${D}, class embeddings ${classes.dim}`);
  if (labels.length !== N) throw new Error(`${labels.length} labels for ${N} images`);
  if (N === 0) throw new Error("zero-shot needs at least one image");
  const ranks = new Int32Array(N);
  const scores = new Float64Array(C);
  for (let i = 0; i < N; i++) {
    const y = labels[i]!;
    if (y < 0 || y >= C) throw new Error(`image ${i} has label ${y}, outside [0, ${C})`);
    for (let c = 0; c < C; c++) scores[c] = dot(images.data, i * D, classes.data, c * D, D);
    let r = 0;
    for (let c = 0; c < C; c++) if (c !== y && scores[c]! >= scores[y]!) r++;
    ranks[i] = r;
  }
  return { top1: fractionBelow(ranks, 1), top5: fractionBelow(ranks, 5) };
}
