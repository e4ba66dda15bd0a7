// Evaluates one round: scores the round's ONNX encoders (and, for maxRegression gates, the
// promoted model's) on every retrieval pack the round should see and on each zero-shot pack,
// folds the scores into metric paths and the TiC matrix, and returns eval.json's content.
// Bad input never throws: it comes back as a Failed result with a reason (the round is Rejected).
import { parseRoundKey, ROUND_FILES } from "../api/round-layout.ts";
import { EVAL_JSON, EVAL_SCHEMA_VERSION, evalResult, type EvalResult, type ModelScores } from "../api/eval-result.ts";
import type { RetrievalPackManifest, ZeroShotPackManifest } from "../api/eval-pack.ts";
import type { ObjectStore } from "../s3/object-store.ts";
import { classEmbeddings, retrievalMetrics, zeroShotMetrics, type Embeddings, type RetrievalMetrics, type ZeroShotMetrics } from "./metrics.ts";
import { encode, loadModel, preprocessingMismatch, releaseModel, type ExecutionProvider, type LoadedModel } from "./onnx.ts";
import { EvalInputError, normalizeImages, openPack, readInts, readShards, type OpenPack } from "./pack.ts";
import { relationOf, roundMetrics, ticMatrix, type TicRow } from "./tic.ts";

export type EvaluateRequest = {
  round: number;
  /** The round folder: s3://<artifacts>/rounds/<NNNN>/ with model.json and both encoders. */
  roundUri: string;
  /** The slices this round trained on as new data. */
  roundSlices: string[];
  /** Retrieval packs to score, usually slicesToScore(...) of the slices that have one. */
  retrieval: { sliceId: string; packUri: string }[];
  zeroShot: { name: string; uri: string }[];
  k: number[];
  /** The promoted version to rescore on the same packs (maxRegression gates compare like with like). */
  baseline?: { version: number; uri: string } | undefined;
  /** TiC rows of earlier rounds; read from rounds/<NNNN>/eval.json beside roundUri when omitted. */
  previousRows?: TicRow[] | undefined;
  executionProvider?: ExecutionProvider;
  batchSize?: number;
  intraOpNumThreads?: number;
  /** RFC 3339 time to record (injected, so results are reproducible). */
  now: string;
};

export const DEFAULT_BATCH_SIZE = 64;

type Scored = { model: LoadedModel; retrieval: ModelScores["retrieval"]; zeroShot: ModelScores["zeroShot"] };

const withSlash = (uri: string) => (uri.endsWith("/") ? uri : uri + "/");

export async function evaluateRound(store: ObjectStore, req: EvaluateRequest): Promise<EvalResult> {
  const started = performance.now();
  const common = { schemaVersion: EVAL_SCHEMA_VERSION, round: req.round, roundUri: withSlash(req.roundUri), roundSlices: req.roundSlices, evaluatedAt: req.now } as const;
  const models: LoadedModel[] = [];
  try {
    const opts = { executionProvider: req.executionProvider ?? "cpu", ...(req.intraOpNumThreads ? { intraOpNumThreads: req.intraOpNumThreads } : {}) } as const;
    const candidate = await loadModel(store, req.roundUri, opts);
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
    const scored: Scored[] = models.map((model) => ({ model, retrieval: [], zeroShot: [] }));
    const counts = { images: 0, texts: 0 };
    const batch = req.batchSize ?? DEFAULT_BATCH_SIZE;

    for (const r of req.retrieval) {
      const pack = await openPack(store, r.packUri);
      if (pack.manifest.kind !== "retrieval") throw new EvalInputError("InvalidEvalPack", `${pack.uri} is a ${pack.manifest.kind} pack, slice ${r.sliceId} needs a retrieval pack`);
      const m = pack.manifest;
      checkPack(candidate, m, pack.uri);
      const textImage = await readInts(store, pack, "textImage", m.textImage);
      const tokens = await readInts(store, pack, "texts", m.texts);
      const images = await encodeImages(store, pack, scored, batch);
      const texts = await Promise.all(scored.map((s) => encode(s.model.text, tokens, m.texts.shape[0]!, batch)));
      counts.images += m.images.shape[0]! * scored.length;
      counts.texts += m.texts.shape[0]! * scored.length;
      scored.forEach((s, i) => {
        const metrics: RetrievalMetrics = inPack(pack.uri, () => retrievalMetrics(images[i]!, texts[i]!, textImage, req.k));
        s.retrieval.push({ sliceId: r.sliceId, packUri: pack.uri, relation: relationOf(r.sliceId, req.roundSlices), images: m.images.shape[0]!, texts: m.texts.shape[0]!, metrics });
      });
    }

    for (const z of req.zeroShot) {
      const pack = await openPack(store, z.uri);
      if (pack.manifest.kind !== "zeroShot") throw new EvalInputError("InvalidEvalPack", `${pack.uri} is a ${pack.manifest.kind} pack, zeroShot ${z.name} needs a zeroShot pack`);
      const m = pack.manifest;
      checkPack(candidate, m, pack.uri);
      const labels = await readInts(store, pack, "labels", m.labels);
      const prompts = await readInts(store, pack, "prompts", m.prompts);
      const images = await encodeImages(store, pack, scored, batch);
      counts.images += m.images.shape[0]! * scored.length;
      counts.texts += m.prompts.shape[0]! * scored.length;
      for (const [i, s] of scored.entries()) {
        const promptEmbeddings = await encode(s.model.text, prompts, m.prompts.shape[0]!, batch);
        const metrics: ZeroShotMetrics = inPack(pack.uri, () => zeroShotMetrics(images[i]!, classEmbeddings(promptEmbeddings, m.classNames.length, m.templates.length), labels));
        s.zeroShot.push({ name: z.name, packUri: pack.uri, images: m.images.shape[0]!, classes: m.classNames.length, templates: m.templates.length, metrics });
      }
    }

    const [cand, base] = scored.map((s) => toModelScores(s, req.roundSlices));
    const previous = req.previousRows ?? (await readTicRows(store, parentOf(common.roundUri), req.round));
    const row: TicRow = { round: req.round, roundSlices: req.roundSlices, cells: Object.fromEntries(cand!.retrieval.map((r) => [r.sliceId, r.metrics.meanRecallAt1!])) };
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
        executionProvider: req.executionProvider ?? "cpu",
      },
    };
    return evalResult.parse(result);
  } catch (e) {
    if (!(e instanceof EvalInputError)) throw e;
    return { ...common, status: "Failed", reason: e.reason, message: e.message };
  } finally {
    await Promise.all(models.map(releaseModel));
  }
}

/** The metric functions throw only on inconsistent pack contents (a caption pointing at no image, a label out of range). */
function inPack<T>(uri: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw new EvalInputError("InvalidEvalPack", `${uri}: ${(e as Error).message}`);
  }
}

/** The candidate must be scored on the pack exactly as the trainer preprocessed its data. */
function checkPack(candidate: LoadedModel, m: RetrievalPackManifest | ZeroShotPackManifest, uri: string): void {
  const mismatch = preprocessingMismatch(candidate.model, m);
  if (mismatch !== undefined) throw new EvalInputError("PackModelMismatch", `${uri}: ${mismatch}`);
}

/** Streams the pack's image shards once, feeding each model batch by batch. */
async function encodeImages(store: ObjectStore, pack: OpenPack, models: Scored[], batch: number): Promise<Embeddings[]> {
  const m = pack.manifest;
  const N = m.images.shape[0]!;
  const per = 3 * m.preprocessing.imageSize * m.preprocessing.imageSize;
  const out = models.map((s) => ({ data: new Float32Array(N * s.model.image.dim), rows: N, dim: s.model.image.dim }));
  for await (const sh of readShards(store, pack, "images", m.images)) {
    for (let r = 0; r < sh.rows; r += batch) {
      const b = Math.min(batch, sh.rows - r);
      const x = normalizeImages(sh.bytes.subarray(r * per, (r + b) * per), m.preprocessing);
      for (const [i, s] of models.entries()) {
        const e = await encode(s.model.image, x, b, batch);
        out[i]!.data.set(e.data, (sh.row + r) * e.dim);
      }
    }
  }
  return out;
}

function toModelScores(s: Scored, roundSlices: string[]): ModelScores {
  const folded = roundMetrics(
    s.retrieval.map((r) => ({ sliceId: r.sliceId, metrics: r.metrics as RetrievalMetrics })),
    roundSlices,
    s.zeroShot.map((z) => ({ name: z.name, metrics: z.metrics })),
  );
  return {
    uri: s.model.uri,
    architecture: s.model.model.architecture,
    embeddingDim: s.model.model.embeddingDim,
    sha256: s.model.sha256,
    retrieval: s.retrieval,
    zeroShot: s.zeroShot,
    metrics: folded.metrics,
    notApplicable: folded.notApplicable,
  };
}

function parentOf(uri: string): string {
  return uri.replace(/[^/]+\/$/, "");
}

/** TiC rows of rounds before `beforeRound`, from their eval.json (failed evaluations have none). */
export async function readTicRows(store: ObjectStore, roundsUri: string, beforeRound: number): Promise<TicRow[]> {
  const rows: TicRow[] = [];
  const base = withSlash(roundsUri);
  for (const o of await store.list(base)) {
    const key = parseRoundKey(o.uri.slice(base.length));
    if (!key || key.round >= beforeRound || key.file !== ROUND_FILES.eval) continue;
    const parsed = await readEvalResult(store, o.uri);
    if (parsed?.status === "Succeeded") {
      rows.push({ round: parsed.round, roundSlices: parsed.roundSlices, cells: Object.fromEntries(parsed.candidate.retrieval.map((r) => [r.sliceId, r.metrics.meanRecallAt1!])) });
    }
  }
  return rows;
}

/** eval.json of a round, or undefined when absent or unreadable. */
export async function readEvalResult(store: ObjectStore, uri: string): Promise<EvalResult | undefined> {
  const raw = await store.get(uri.endsWith(EVAL_JSON) ? uri : withSlash(uri) + EVAL_JSON);
  if (!raw) return undefined;
  try {
    const parsed = evalResult.safeParse(JSON.parse(new TextDecoder().decode(raw)));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export async function writeEvalResult(store: ObjectStore, roundUri: string, result: EvalResult): Promise<string> {
  const uri = withSlash(roundUri) + EVAL_JSON;
  await store.put(uri, JSON.stringify(result, null, 2) + "\n", "application/json");
  return uri;
}
