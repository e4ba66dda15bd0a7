// The scoring of one round on the calling thread (the worker thread of evaluate.ts's
// evaluateRound, or the evaluation Job): loads the ONNX encoders with onnxruntime, encodes every
// pack, and returns eval.json's content. Bad input never throws: it is a Failed result.
import { withSlash } from "../api/common.ts";
import { isMainThread } from "node:worker_threads";
import { EVAL_SCHEMA_VERSION, evalResult, type EvalResult, type ModelScores } from "../api/eval-result.ts";
import type { EvalPackManifest, RetrievalPackManifest, ZeroShotPackManifest } from "../api/eval-pack.ts";
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

/** What scoring every pack of a round shares: the models, the kernel, batch sizes, counts and timers. */
type Scoring = {
  store: ObjectStore;
  req: EvaluateRequest;
  candidate: LoadedModel;
  scored: Scored[];
  kernel: SimilarityKernel;
  batch: { image: number; text: number };
  counts: { images: number; texts: number };
  timed: <T>(part: "encode" | "metrics", fn: () => Promise<T>) => Promise<T>;
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
    const { candidate, baselineProblem } = await loadModels(store, req, common.roundUri, threads, models);
    const withBaseline = models.length > 1;
    // The trained weights before weight-space merging: scored on the same packs, for the record (gates use the merge).
    if (req.unmerged) {
      const opts = { executionProvider: ep, intraOpNumThreads: threads } as const;
      models.push(await loadModel(store, req.unmerged.uri, opts));
      const differs = preprocessingMismatch(models.at(-1)!.model, { preprocessing: candidate.model });
      if (differs !== undefined) throw new EvalInputError("InvalidModel", `unmerged model: ${differs}`);
    }
    kernel = await createSimilarityKernel(threads);
    const requested = req.batchSize ?? DEFAULT_BATCH_SIZE;
    const clock = { encode: 0, metrics: 0 };
    const s: Scoring = {
      store,
      req,
      candidate,
      scored: models.map((model) => ({ model, retrieval: [], zeroShot: [] })),
      kernel,
      batch: {
        image: encoderBatch(requested, candidate.image.rowShape, ep),
        text: encoderBatch(requested, candidate.text.rowShape, ep),
      },
      counts: { images: 0, texts: 0 },
      timed: async (part, fn) => {
        const t0 = performance.now();
        try {
          return await fn();
        } finally {
          clock[part] += (performance.now() - t0) / 1000;
        }
      },
    };
    for (const r of req.retrieval) await scoreRetrievalPack(s, r);
    for (const z of req.zeroShot) await scoreZeroShotPack(s, z);

    const all = s.scored.map((x) => toModelScores(x, req.roundSlices));
    const [cand, base, unmerged] = [all[0], withBaseline ? all[1] : undefined, req.unmerged ? all.at(-1) : undefined];
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
      ...(unmerged ? { unmerged } : {}),
      matrix: ticMatrix([...previous.filter((r) => r.round < req.round), row]),
      timing: timingOf(s, models, { seconds: (performance.now() - started) / 1000, ...clock }, ep, threads),
    };
    return evalResult.parse(result);
  } catch (e) {
    if (!(e instanceof EvalInputError)) throw e;
    return { ...common, status: "Failed", reason: e.reason, message: e.message };
  } finally {
    await Promise.all([...models.map(releaseModel), kernel?.release()]);
  }
}

/** How the round was scored: what a reader needs to compare timings and trust the numbers. */
function timingOf(
  s: Scoring,
  models: LoadedModel[],
  clock: { seconds: number; encode: number; metrics: number },
  executionProvider: string,
  intraOpNumThreads: number,
): Extract<EvalResult, { status: "Succeeded" }>["timing"] {
  return {
    seconds: clock.seconds,
    imagesEncoded: s.counts.images,
    textsEncoded: s.counts.texts,
    executionProvider,
    precision: "fp32",
    intraOpNumThreads,
    batchSize: s.batch,
    optimizedModelCache: Object.fromEntries(
      models.flatMap((m) => [
        [m.image.file, m.image.optimizedCache],
        [m.text.file, m.text.optimizedCache],
      ]),
    ),
    encodeSeconds: clock.encode,
    metricsSeconds: clock.metrics,
    inWorkerThread: !isMainThread,
  };
}

/**
 * The candidate, and the promoted baseline when it can be scored on the same packs (else why not).
 * Every model loaded is pushed onto `models` at once, so the caller releases it whatever fails next.
 */
async function loadModels(
  store: ObjectStore,
  req: EvaluateRequest,
  roundUri: string,
  threads: number,
  models: LoadedModel[],
): Promise<{ candidate: LoadedModel; baselineProblem?: string }> {
  const opts = { executionProvider: req.executionProvider ?? "cpu", intraOpNumThreads: threads } as const;
  // In a worker, the store's writes run on the operator's thread: the evaluation Job writes the cache.
  const cache = { optimizedCacheUri: roundUri, optimizedCacheReadOnly: !isMainThread };
  const candidate = await loadModel(store, req.roundUri, { ...opts, ...cache });
  models.push(candidate);
  if (!req.baseline) return { candidate };
  try {
    const base = await loadModel(store, req.baseline.uri, opts);
    models.push(base);
    // Packs match the candidate's preprocessing; a baseline that differs cannot be scored on them.
    const differs = preprocessingMismatch(base.model, { preprocessing: candidate.model });
    if (differs === undefined) return { candidate };
    models.pop();
    await releaseModel(base);
    return { candidate, baselineProblem: `promoted v${req.baseline.version} not rescored: ${differs}` };
  } catch (e) {
    if (!(e instanceof EvalInputError)) throw e;
    return { candidate, baselineProblem: `promoted v${req.baseline.version} could not be loaded: ${e.message}` };
  }
}

/** A pack of the kind `user` needs, fit for the candidate (preprocessing as the trainer's). */
async function openPackOf<K extends EvalPackManifest["kind"]>(
  s: Scoring,
  uri: string,
  kind: K,
  user: string,
): Promise<{ pack: OpenPack; m: Extract<EvalPackManifest, { kind: K }> }> {
  const pack = await openPack(s.store, uri);
  const m = pack.manifest;
  if (m.kind !== kind)
    throw new EvalInputError("InvalidEvalPack", `${pack.uri} is a ${m.kind} pack, ${user} needs a ${kind} pack`);
  checkPack(s.candidate, m, pack.uri);
  return { pack, m: m as Extract<EvalPackManifest, { kind: K }> };
}

/** One slice's retrieval pack, scored for every model. */
async function scoreRetrievalPack(s: Scoring, r: EvaluateRequest["retrieval"][number]): Promise<void> {
  const { store, scored } = s;
  const { pack, m } = await openPackOf(s, r.packUri, "retrieval", `slice ${r.sliceId}`);
  const M = m.texts.shape[0]!;
  const textImage = await readInts(store, pack, "textImage", m.textImage);
  const tokens = await readInts(store, pack, "texts", m.texts);
  // Token-identical captions are one text: encoded once, right for every image they describe.
  const groups = groupIdenticalTexts(tokens, M);
  const distinct = pickRows(tokens, M, groups.firstRow);
  const images = await s.timed("encode", () => encodeImages(store, pack, scored, s.batch.image));
  const texts = await s.timed("encode", () =>
    Promise.all(scored.map((x) => encode(x.model.text, distinct, groups.firstRow.length, s.batch.text))),
  );
  s.counts.images += m.images.shape[0]! * scored.length;
  s.counts.texts += groups.firstRow.length * scored.length;
  for (const [i, x] of scored.entries()) {
    const input = { images: images[i]!, texts: texts[i]!, textImage, textGroup: groups.groupOf };
    const { metrics, chance } = await s.timed("metrics", () =>
      inPack(pack.uri, () => retrievalMetrics(s.kernel, input, s.req.k)),
    );
    x.retrieval.push({
      sliceId: r.sliceId,
      packUri: pack.uri,
      relation: relationOf(r.sliceId, s.req.roundSlices),
      images: m.images.shape[0]!,
      texts: M,
      distinctTexts: groups.firstRow.length,
      metrics,
      chance,
    });
  }
}

/** One zero-shot pack, scored for every model. */
async function scoreZeroShotPack(s: Scoring, z: EvaluateRequest["zeroShot"][number]): Promise<void> {
  const { store, scored } = s;
  const { pack, m } = await openPackOf(s, z.uri, "zeroShot", `zeroShot ${z.name}`);
  const labels = await readInts(store, pack, "labels", m.labels);
  const prompts = await readInts(store, pack, "prompts", m.prompts);
  const images = await s.timed("encode", () => encodeImages(store, pack, scored, s.batch.image));
  s.counts.images += m.images.shape[0]! * scored.length;
  s.counts.texts += m.prompts.shape[0]! * scored.length;
  for (const [i, x] of scored.entries()) {
    const promptEmbeddings = await s.timed("encode", () =>
      encode(x.model.text, prompts, m.prompts.shape[0]!, s.batch.text),
    );
    const classes = classEmbeddings(promptEmbeddings, m.classNames.length, m.templates.length);
    const { metrics, chance } = await s.timed("metrics", () =>
      inPack(pack.uri, () => zeroShotMetrics(s.kernel, images[i]!, classes, labels)),
    );
    x.zeroShot.push({
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
