// The scoring of one round on the calling thread (the worker thread of evaluate.ts's
// evaluateRound, or the evaluation Job): loads the ONNX encoders with onnxruntime, encodes every
// pack, and returns eval.json's content. Bad input never throws: it is a Failed result.
import { withSlash } from "../api/common.ts";
import { isMainThread } from "node:worker_threads";
import { EVAL_SCHEMA_VERSION, evalResult, type EvalResult, type ModelScores } from "../api/eval-result.ts";
import type { RetrievalPackManifest, ZeroShotPackManifest } from "../api/eval-pack.ts";
import { ZERO_SHOT_METRICS } from "../api/gate-metrics.ts";
import type { ObjectStore } from "../s3/object-store.ts";
import { createSimilarityKernel, type SimilarityKernel } from "./kernel.ts";
import {
  classEmbeddings,
  groupIdenticalTexts,
  pickRows,
  retrievalMetrics,
  zeroShotMetrics,
  type Embeddings,
  type RetrievalMetrics,
} from "./metrics.ts";
import { DEFAULT_BATCH_SIZE, readTicRows, type EvaluateRequest } from "./evaluate.ts";
import { encode, encoderBatch, loadModel, preprocessingMismatch, releaseModel, type LoadedModel } from "./onnx.ts";
import { EvalInputError, normalizeImages, openPack, readInts, readShards, type OpenPack } from "./pack.ts";
import { relationOf, roundMetrics, ticMatrix, type TicRow } from "./tic.ts";
import { defaultIntraOpThreads } from "./runtime.ts";

type Scored = {
  model: LoadedModel;
  retrieval: ModelScores["retrieval"];
  zeroShot: ModelScores["zeroShot"];
};

/** The evaluation itself, on the calling thread. Bad input never throws: it is a Failed result. */
export async function scoreRound(store: ObjectStore, req: EvaluateRequest): Promise<EvalResult> {
  const started = performance.now();
  const common = {
    schemaVersion: EVAL_SCHEMA_VERSION,
    round: req.round,
    roundUri: withSlash(req.roundUri),
    roundSlices: req.roundSlices,
    evaluatedAt: req.now,
  } as const;
  const models: LoadedModel[] = [];
  let kernel: SimilarityKernel | undefined;
  try {
    const threads = req.intraOpNumThreads ?? defaultIntraOpThreads();
    const ep = req.executionProvider ?? "cpu";
    const opts = { executionProvider: ep, intraOpNumThreads: threads } as const;
    // In a worker, the store's writes run on the operator's thread: the evaluation Job writes the cache.
    const cache = { optimizedCacheUri: common.roundUri, optimizedCacheReadOnly: !isMainThread };
    const candidate = await loadModel(store, req.roundUri, { ...opts, ...cache });
    models.push(candidate);
    let baselineProblem: string | undefined;
    if (req.baseline) {
      try {
        const base = await loadModel(store, req.baseline.uri, opts);
        models.push(base);
        // Packs match the candidate's preprocessing; a baseline that differs cannot be scored on them.
        const differs = preprocessingMismatch(base.model, { preprocessing: candidate.model });
        if (differs !== undefined) {
          baselineProblem = `promoted v${req.baseline.version} not rescored: ${differs}`;
          models.pop();
          await releaseModel(base);
        }
      } catch (e) {
        if (!(e instanceof EvalInputError)) throw e;
        baselineProblem = `promoted v${req.baseline.version} could not be loaded: ${e.message}`;
      }
    }
    kernel = await createSimilarityKernel(threads);
    const scored: Scored[] = models.map((model) => ({ model, retrieval: [], zeroShot: [] }));
    const counts = { images: 0, texts: 0 };
    const requested = req.batchSize ?? DEFAULT_BATCH_SIZE;
    const batch = {
      image: encoderBatch(requested, candidate.image.rowShape, ep),
      text: encoderBatch(requested, candidate.text.rowShape, ep),
    };
    const clock = { encode: 0, metrics: 0 };
    const timed = async <T>(part: keyof typeof clock, fn: () => Promise<T>): Promise<T> => {
      const t0 = performance.now();
      try {
        return await fn();
      } finally {
        clock[part] += (performance.now() - t0) / 1000;
      }
    };

    for (const r of req.retrieval) {
      const pack = await openPack(store, r.packUri);
      if (pack.manifest.kind !== "retrieval")
        throw new EvalInputError(
          "InvalidEvalPack",
          `${pack.uri} is a ${pack.manifest.kind} pack, slice ${r.sliceId} needs a retrieval pack`,
        );
      const m = pack.manifest;
      checkPack(candidate, m, pack.uri);
      const M = m.texts.shape[0]!;
      const textImage = await readInts(store, pack, "textImage", m.textImage);
      const tokens = await readInts(store, pack, "texts", m.texts);
      // Token-identical captions are one text: encoded once, right for every image they describe.
      const groups = groupIdenticalTexts(tokens, M);
      const distinct = pickRows(tokens, M, groups.firstRow);
      const images = await timed("encode", () => encodeImages(store, pack, scored, batch.image));
      const texts = await timed("encode", () =>
        Promise.all(scored.map((s) => encode(s.model.text, distinct, groups.firstRow.length, batch.text))),
      );
      counts.images += m.images.shape[0]! * scored.length;
      counts.texts += groups.firstRow.length * scored.length;
      for (const [i, s] of scored.entries()) {
        const input = { images: images[i]!, texts: texts[i]!, textImage, textGroup: groups.groupOf };
        const { metrics, chance } = await timed("metrics", () =>
          inPack(pack.uri, () => retrievalMetrics(kernel!, input, req.k)),
        );
        s.retrieval.push({
          sliceId: r.sliceId,
          packUri: pack.uri,
          relation: relationOf(r.sliceId, req.roundSlices),
          images: m.images.shape[0]!,
          texts: M,
          distinctTexts: groups.firstRow.length,
          metrics,
          chance,
        });
      }
    }

    for (const z of req.zeroShot) {
      const pack = await openPack(store, z.uri);
      if (pack.manifest.kind !== "zeroShot")
        throw new EvalInputError(
          "InvalidEvalPack",
          `${pack.uri} is a ${pack.manifest.kind} pack, zeroShot ${z.name} needs a zeroShot pack`,
        );
      const m = pack.manifest;
      checkPack(candidate, m, pack.uri);
      const labels = await readInts(store, pack, "labels", m.labels);
      const prompts = await readInts(store, pack, "prompts", m.prompts);
      const images = await timed("encode", () => encodeImages(store, pack, scored, batch.image));
      counts.images += m.images.shape[0]! * scored.length;
      counts.texts += m.prompts.shape[0]! * scored.length;
      for (const [i, s] of scored.entries()) {
        const promptEmbeddings = await timed("encode", () =>
          encode(s.model.text, prompts, m.prompts.shape[0]!, batch.text),
        );
        const classes = classEmbeddings(promptEmbeddings, m.classNames.length, m.templates.length);
        const { metrics, chance } = await timed("metrics", () =>
          inPack(pack.uri, () => zeroShotMetrics(kernel!, images[i]!, classes, labels)),
        );
        s.zeroShot.push({
          name: z.name,
          packUri: pack.uri,
          images: m.images.shape[0]!,
          classes: m.classNames.length,
          templates: m.templates.length,
          metrics,
          chance,
        });
      }
    }

    const [cand, base] = scored.map((s) => toModelScores(s, req.roundSlices));
    const previous = req.previousRows ?? (await readTicRows(store, parentOf(common.roundUri), req.round));
    const row: TicRow = {
      round: req.round,
      roundSlices: req.roundSlices,
      cells: Object.fromEntries(cand!.retrieval.map((r) => [r.sliceId, r.metrics.meanRecallAt1!])),
    };
    const result: EvalResult = {
      ...common,
      status: "Succeeded",
      k: [...new Set([1, ...req.k])].sort((a, b) => a - b),
      candidate: cand!,
      ...(base && req.baseline && !baselineProblem ? { baseline: { ...base, version: req.baseline.version } } : {}),
      ...(baselineProblem ? { baselineProblem } : {}),
      matrix: ticMatrix([...previous.filter((r) => r.round < req.round), row]),
      timing: {
        seconds: (performance.now() - started) / 1000,
        imagesEncoded: counts.images,
        textsEncoded: counts.texts,
        executionProvider: ep,
        precision: "fp32",
        intraOpNumThreads: threads,
        batchSize: batch,
        optimizedModelCache: Object.fromEntries(
          models.flatMap((m) => [
            [m.image.file, m.image.optimizedCache],
            [m.text.file, m.text.optimizedCache],
          ]),
        ),
        encodeSeconds: clock.encode,
        metricsSeconds: clock.metrics,
        inWorkerThread: !isMainThread,
      },
    };
    return evalResult.parse(result);
  } catch (e) {
    if (!(e instanceof EvalInputError)) throw e;
    return { ...common, status: "Failed", reason: e.reason, message: e.message };
  } finally {
    await Promise.all([...models.map(releaseModel), kernel?.release()]);
  }
}

/** The metric functions throw only on inconsistent pack contents (a caption pointing at no image, a label out of range). */
async function inPack<T>(uri: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw new EvalInputError("InvalidEvalPack", `${uri}: ${(e as Error).message}`);
  }
}

/** The candidate must be scored on the pack exactly as the trainer preprocessed its data. */
function checkPack(candidate: LoadedModel, m: RetrievalPackManifest | ZeroShotPackManifest, uri: string): void {
  const mismatch = preprocessingMismatch(candidate.model, m);
  if (mismatch !== undefined) throw new EvalInputError("PackModelMismatch", `${uri}: ${mismatch}`);
}

/** Streams the pack's image shards once, feeding each model batch by batch from one reused buffer. */
async function encodeImages(
  store: ObjectStore,
  pack: OpenPack,
  models: Scored[],
  batch: number,
): Promise<Embeddings[]> {
  const m = pack.manifest;
  const N = m.images.shape[0]!;
  const per = 3 * m.preprocessing.imageSize * m.preprocessing.imageSize;
  const out = models.map((s) => ({ data: new Float32Array(N * s.model.image.dim), rows: N, dim: s.model.image.dim }));
  const buffer = new Float32Array(Math.min(batch, N) * per);
  for await (const sh of readShards(store, pack, "images", m.images)) {
    for (let r = 0; r < sh.rows; r += batch) {
      const b = Math.min(batch, sh.rows - r);
      const x = normalizeImages(sh.bytes.subarray(r * per, (r + b) * per), m.preprocessing, buffer);
      for (const [i, s] of models.entries()) {
        const e = await encode(s.model.image, x, b, batch);
        out[i]!.data.set(e.data, (sh.row + r) * e.dim);
      }
    }
  }
  return out;
}

/** Zero-shot chance of a pack scored before chance levels were recorded. */
const NO_ZERO_SHOT = Object.fromEntries(ZERO_SHOT_METRICS.map((m) => [m, 0])) as Record<
  (typeof ZERO_SHOT_METRICS)[number],
  number
>;

function toModelScores(s: Scored, roundSlices: string[]): ModelScores {
  const fold = (pick: "metrics" | "chance") =>
    roundMetrics(
      s.retrieval.map((r) => ({ sliceId: r.sliceId, metrics: (r[pick] ?? {}) as RetrievalMetrics })),
      roundSlices,
      s.zeroShot.map((z) => ({ name: z.name, metrics: z[pick] ?? NO_ZERO_SHOT })),
    );
  const folded = fold("metrics");
  return {
    uri: s.model.uri,
    architecture: s.model.model.architecture,
    embeddingDim: s.model.model.embeddingDim,
    sha256: s.model.sha256,
    retrieval: s.retrieval,
    zeroShot: s.zeroShot,
    metrics: folded.metrics,
    chance: fold("chance").metrics,
    notApplicable: folded.notApplicable,
  };
}

function parentOf(uri: string): string {
  return uri.replace(/[^/]+\/$/, "");
}
