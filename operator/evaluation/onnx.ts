// The served artifact, scored as served: image_encoder.onnx and text_encoder.onnx in onnxruntime-node.
// Loading checks each encoder's input name, dtype and shape and its output dimension against model.json.
// Sessions run at full speed: intra-op threads from the container's CPU limit, graph optimisation
// level "all" with the optimised graph cached next to the round, input buffers allocated once.
import { withSlash } from "../api/common.ts";
import { createHash } from "node:crypto";
import { readFileSync, rmSync, mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import * as ort from "onnxruntime-node";
import { defaultIntraOpThreads, ExecutionProviderUnavailable, type ExecutionProvider } from "./runtime.ts";
import { exportedModel, IMAGE_ENCODER, MODEL_JSON, TEXT_ENCODER, type ExportedModel } from "../api/exported-model.ts";
import type { PreprocessingSpec } from "../api/eval-pack.ts";
import { DOCUMENT_LIMITS, readDocument } from "../s3/documents.ts";
import type { ObjectStore } from "../s3/object-store.ts";
import { EvalInputError } from "./pack.ts";
import type { Embeddings } from "./metrics.ts";

/** Embeddings whose L2 norm is further than this from 1 mean the export is not the contract's. */
export const NORM_TOLERANCE = 1e-2;

export type Encoder = {
  file: string;
  session: ort.InferenceSession;
  inputName: string;
  outputName: string;
  inputType: "float32" | "int64" | "int32";
  /** Shape of one input row (without the batch dimension). */
  rowShape: number[];
  dim: number;
  l2Normalized: boolean;
  /** Where the optimised graph came from: "hit", "written", "off", or why it could not be used. */
  optimizedCache: string;
};

export type LoadedModel = {
  uri: string;
  model: ExportedModel;
  image: Encoder;
  text: Encoder;
  sha256: { image: string; text: string };
};

export type SessionOptions = {
  executionProvider?: ExecutionProvider;
  intraOpNumThreads?: number;
  /** Cache the optimised graphs in this store folder (the round's); unset: optimise on every load. */
  optimizedCacheUri?: string | undefined;
  /** Only read the cache: writing hundreds of MB through an in-process caller's thread would stall it. */
  optimizedCacheReadOnly?: boolean;
};

/** The options every session of an evaluation shares (encoders and the similarity kernel). */
export function sessionOptions(opts: SessionOptions): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [opts.executionProvider ?? "cpu"],
    graphOptimizationLevel: "all",
    intraOpNumThreads: opts.intraOpNumThreads ?? defaultIntraOpThreads(),
    // One run at a time per session: inter-op parallelism only adds threads that compete with intra-op.
    executionMode: "sequential",
  };
}

export async function readModelJson(store: ObjectStore, modelUri: string): Promise<ExportedModel> {
  const uri = withSlash(modelUri) + MODEL_JSON;
  const read = await readDocument(store, uri, DOCUMENT_LIMITS.small, exportedModel);
  if (!read) throw new EvalInputError("ModelMissing", `${uri} not found`);
  if ("invalid" in read) throw new EvalInputError("InvalidModel", `${uri}: ${read.invalid}`);
  return read.value;
}

const sha256Hex = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Loads model.json and both encoders from a round (or promoted version) folder. */
export async function loadModel(store: ObjectStore, modelUri: string, opts: SessionOptions = {}): Promise<LoadedModel> {
  const uri = withSlash(modelUri);
  const model = await readModelJson(store, uri);
  const [imageBytes, textBytes] = await Promise.all([
    store.get(uri + (model.onnx.image.file || IMAGE_ENCODER)),
    store.get(uri + (model.onnx.text.file || TEXT_ENCODER)),
  ]);
  if (!imageBytes) throw new EvalInputError("ModelMissing", `${uri}${model.onnx.image.file} not found`);
  if (!textBytes) throw new EvalInputError("ModelMissing", `${uri}${model.onnx.text.file} not found`);
  const S = model.imageSize;
  const sha256 = { image: sha256Hex(imageBytes), text: sha256Hex(textBytes) };
  const load = (file: string, bytes: Uint8Array, sha: string, spec: EncoderJson, rowShape: number[]) =>
    loadEncoder(store, { file: uri + file, bytes, sha256: sha }, spec, rowShape, model.embeddingDim, opts);
  const image = await load(model.onnx.image.file, imageBytes, sha256.image, model.onnx.image, [3, S, S]);
  const text = await load(model.onnx.text.file, textBytes, sha256.text, model.onnx.text, [
    model.tokenizer.contextLength,
  ]);
  if (image.inputType !== "float32")
    throw new EvalInputError("InvalidModel", `${image.file}: image input is ${image.inputType}, expected float32`);
  if (text.inputType === "float32")
    throw new EvalInputError("InvalidModel", `${text.file}: text input is float32, expected int64 or int32 token ids`);
  return { uri, model, image, text, sha256 };
}

type EncoderJson = ExportedModel["onnx"]["image"];
type ModelFile = { file: string; bytes: Uint8Array; sha256: string };

/**
 * The optimised graph depends on the source model, onnxruntime's version, the execution provider
 * and the CPU (level "all" picks kernels and layouts per instruction set), so all go into its name.
 */
export function optimizedCacheName(file: string, sha256: string, executionProvider: string): string {
  const cpu = `${process.arch} ${os.cpus()[0]?.model ?? ""}`;
  const key = createHash("sha256")
    .update([sha256, ort.env.versions.common, executionProvider, cpu].join("\n"))
    .digest("hex");
  return `${path.basename(file, ".onnx")}.${key.slice(0, 16)}.optimized.onnx`;
}

type Created = { session: ort.InferenceSession; optimizedCache: string };

async function createSession(store: ObjectStore, m: ModelFile, opts: SessionOptions): Promise<Created> {
  const options = sessionOptions(opts);
  try {
    if (!opts.optimizedCacheUri)
      return { session: await ort.InferenceSession.create(m.bytes, options), optimizedCache: "off" };
    const cacheUri =
      withSlash(opts.optimizedCacheUri) + optimizedCacheName(m.file, m.sha256, opts.executionProvider ?? "cpu");
    return await createCachedSession(store, m, options, cacheUri, opts.optimizedCacheReadOnly === true);
  } catch (e) {
    // A missing CUDA provider is the image's or node's problem, not the model's: not a rejection.
    if (/ExecutionProvider/i.test(String((e as Error)?.message))) {
      throw new ExecutionProviderUnavailable(
        `execution provider ${opts.executionProvider} is not available here: ${firstLine(e)}`,
      );
    }
    throw new EvalInputError("InvalidModel", `${m.file} is not a loadable ONNX model: ${firstLine(e)}`);
  }
}

/**
 * Level "all" rewrites the graph on every load (seconds for ViT-B); the rewritten graph is kept in
 * the store beside the round, so the retry of an evaluation Job, the baseline's next rescoring and
 * the full TiC matrix load it without optimising again. The cache is an optimisation only: a
 * cache that cannot be read or written is reported in eval.json and the model is optimised here.
 */
async function createCachedSession(
  store: ObjectStore,
  m: ModelFile,
  options: ort.InferenceSession.SessionOptions,
  cacheUri: string,
  readOnly: boolean,
): Promise<Created> {
  let problem = "";
  try {
    const cached = await store.get(cacheUri);
    if (cached) {
      // Already optimised: optimising again would only cost the time the cache saves.
      const session = await ort.InferenceSession.create(cached, { ...options, graphOptimizationLevel: "disabled" });
      return { session, optimizedCache: "hit" };
    }
  } catch (e) {
    problem = `cached ${cacheUri} unusable (${firstLine(e)}), `;
  }
  if (readOnly)
    return {
      session: await ort.InferenceSession.create(m.bytes, options),
      optimizedCache: `${problem}miss (read-only)`,
    };
  const dir = mkdtempSync(path.join(os.tmpdir(), "ticclip-ort-"));
  try {
    const file = path.join(dir, "optimized.onnx");
    // logSeverityLevel 3: onnxruntime warns that the file is hardware-specific; the cache name says so.
    const session = await ort.InferenceSession.create(m.bytes, {
      ...options,
      optimizedModelFilePath: file,
      logSeverityLevel: 3,
    });
    try {
      await store.put(cacheUri, new Uint8Array(readFileSync(file)), "application/octet-stream");
      return { session, optimizedCache: `${problem}written` };
    } catch (e) {
      return { session, optimizedCache: `${problem}not written to ${cacheUri}: ${firstLine(e)}` };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function loadEncoder(
  store: ObjectStore,
  m: ModelFile,
  spec: EncoderJson,
  rowShape: number[],
  dim: number,
  opts: SessionOptions,
): Promise<Encoder> {
  const file = m.file;
  const { session, optimizedCache } = await createSession(store, m, opts);
  const bad = (msg: string) => {
    void session.release();
    return new EvalInputError("InvalidModel", `${file}: ${msg}`);
  };
  if (session.inputNames.length !== 1 || session.inputNames[0] !== spec.input.name) {
    throw bad(`inputs are [${session.inputNames.join(", ")}], model.json says [${spec.input.name}]`);
  }
  if (!session.outputNames.includes(spec.output.name))
    throw bad(`outputs are [${session.outputNames.join(", ")}], model.json says ${spec.output.name}`);
  const input = session.inputMetadata[0];
  if (!input?.isTensor) throw bad(`input ${spec.input.name} is not a tensor`);
  if (input.type !== spec.input.dtype)
    throw bad(`input ${spec.input.name} is ${input.type}, model.json says ${spec.input.dtype}`);
  if (input.type !== "float32" && input.type !== "int64" && input.type !== "int32")
    throw bad(`input type ${input.type} is not supported`);
  const shape = input.shape;
  if (shape.length !== rowShape.length + 1)
    throw bad(`input ${spec.input.name} has shape [${shape.join(", ")}], expected [batch, ${rowShape.join(", ")}]`);
  rowShape.forEach((want, i) => {
    const got = shape[i + 1];
    if (typeof got === "number" && got > 0 && got !== want)
      throw bad(`input ${spec.input.name} has shape [${shape.join(", ")}], expected [batch, ${rowShape.join(", ")}]`);
  });
  const out = session.outputMetadata.find((o) => o.name === spec.output.name);
  if (out?.isTensor) {
    const last = out.shape.at(-1);
    if (typeof last === "number" && last > 0 && last !== dim)
      throw bad(`output ${spec.output.name} has dimension ${last}, model.json says embeddingDim ${dim}`);
  }
  return {
    file,
    session,
    inputName: spec.input.name,
    outputName: spec.output.name,
    inputType: input.type,
    rowShape,
    dim,
    l2Normalized: spec.output.l2Normalized !== false,
    optimizedCache,
  };
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e)
    .split("\n")[0]!
    .slice(0, 500);
}

export type EncoderInput = Float32Array | Int32Array;

/**
 * Runs an encoder over `rows` inputs in batches and checks every embedding: right dimension,
 * finite, unit norm when model.json promises it. Token ids arrive as Int32Array and are widened
 * to the model's dtype.
 */
export async function encode(enc: Encoder, input: EncoderInput, rows: number, batchSize: number): Promise<Embeddings> {
  const per = enc.rowShape.reduce((a, b) => a * b, 1);
  if (input.length !== rows * per) throw new Error(`encode: ${input.length} values for ${rows} rows of ${per}`);
  const out = new Float32Array(rows * enc.dim);
  // Token ids are widened into one buffer allocated for the whole call; float input is passed as views.
  const wide = enc.inputType === "int64" ? new BigInt64Array(Math.min(batchSize, rows) * per) : undefined;
  for (let start = 0; start < rows; start += batchSize) {
    const b = Math.min(batchSize, rows - start);
    const slice = input.subarray(start * per, (start + b) * per);
    let tensor: ort.Tensor;
    if (enc.inputType === "float32") tensor = new ort.Tensor("float32", slice as Float32Array, [b, ...enc.rowShape]);
    else if (enc.inputType === "int32") tensor = new ort.Tensor("int32", slice as Int32Array, [b, ...enc.rowShape]);
    else {
      const ids = wide!.subarray(0, b * per);
      for (let i = 0; i < ids.length; i++) ids[i] = BigInt(slice[i]!);
      tensor = new ort.Tensor("int64", ids, [b, ...enc.rowShape]);
    }
    let result: ort.InferenceSession.OnnxValueMapType;
    try {
      result = await enc.session.run({ [enc.inputName]: tensor });
    } catch (e) {
      throw new EvalInputError("InferenceFailed", `${enc.file}: inference failed on a batch of ${b}: ${firstLine(e)}`);
    }
    const y = result[enc.outputName] as ort.Tensor | undefined;
    if (y?.type !== "float32")
      throw new EvalInputError(
        "InvalidModel",
        `${enc.file}: output ${enc.outputName} is ${y?.type ?? "missing"}, expected float32`,
      );
    if (y.dims.length !== 2 || y.dims[0] !== b || y.dims[1] !== enc.dim) {
      throw new EvalInputError(
        "InvalidModel",
        `${enc.file}: output has shape [${y.dims.join(", ")}] for a batch of ${b}, expected [${b}, ${enc.dim}]`,
      );
    }
    const data = y.data as Float32Array;
    for (let r = 0; r < b; r++) {
      let norm = 0;
      for (let k = 0; k < enc.dim; k++) {
        const v = data[r * enc.dim + k]!;
        if (!Number.isFinite(v))
          throw new EvalInputError(
            "NonFiniteEmbeddings",
            `${enc.file}: embedding of row ${start + r} has a non-finite value (${v})`,
          );
        norm += v * v;
      }
      if (enc.l2Normalized && Math.abs(Math.sqrt(norm) - 1) > NORM_TOLERANCE) {
        throw new EvalInputError(
          "InvalidModel",
          `${enc.file}: embedding of row ${start + r} has L2 norm ${Math.sqrt(norm).toFixed(4)}, model.json promises unit norm`,
        );
      }
    }
    out.set(data, start * enc.dim);
  }
  return { data: out, rows, dim: enc.dim };
}

/**
 * Rows per inference call. The caller's batch size is an upper bound; large inputs get smaller
 * batches so one batch's activations stay near the CPU's cache (measured on ViT-B-32 at 224 px:
 * 16-32 images beat 64, docs/evaluation.md). Small inputs (tiny models, token ids) keep the bound.
 */
export function encoderBatch(
  requested: number,
  rowShape: readonly number[],
  executionProvider: ExecutionProvider = "cpu",
): number {
  if (executionProvider === "cuda") return requested; // a GPU wants large batches
  const rowBytes = rowShape.reduce((a, b) => a * b, 1) * 4;
  const byCache = 2 ** Math.floor(Math.log2(Math.max(1, BATCH_INPUT_BYTES / rowBytes)));
  return Math.max(1, Math.min(requested, byCache));
}

/** Input bytes per image batch on CPU: 32 images at 224 px. */
export const BATCH_INPUT_BYTES = 32 * 3 * 224 * 224 * 4;

export async function releaseModel(m: LoadedModel): Promise<void> {
  await Promise.allSettled([m.image.session.release(), m.text.session.release()]);
}

/** The model and a pack must agree on preprocessing and tokenizer, or the scores mean nothing. */
export function preprocessingMismatch(
  model: ExportedModel,
  pack: { preprocessing: PreprocessingSpec },
): string | undefined {
  const p = pack.preprocessing;
  const close = (a: readonly number[], b: readonly number[]) =>
    a.length === b.length && a.every((x, i) => Math.abs(x - b[i]!) < 1e-6);
  if (p.imageSize !== model.imageSize) return `pack images are ${p.imageSize}px, the model takes ${model.imageSize}px`;
  if (!close(p.mean, model.mean) || !close(p.std, model.std))
    return `pack mean/std [${p.mean}]/[${p.std}] differ from the model's [${model.mean}]/[${model.std}]`;
  if (p.tokenizer.name !== model.tokenizer.name)
    return `pack tokenizer ${p.tokenizer.name} differs from the model's ${model.tokenizer.name}`;
  if (p.tokenizer.contextLength !== model.tokenizer.contextLength)
    return `pack context length ${p.tokenizer.contextLength} differs from the model's ${model.tokenizer.contextLength}`;
  return undefined;
}
