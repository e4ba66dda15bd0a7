// The served artifact, scored as served: image_encoder.onnx and text_encoder.onnx in onnxruntime-node.
// Loading checks each encoder's input name, dtype and shape and its output dimension against model.json.
import * as ort from "onnxruntime-node";
import { formatIssues } from "../api/slice-manifest.ts";
import { exportedModel, IMAGE_ENCODER, MODEL_JSON, TEXT_ENCODER, type ExportedModel } from "../api/exported-model.ts";
import type { PreprocessingSpec } from "../api/eval-pack.ts";
import type { ObjectStore } from "../s3/object-store.ts";
import { EvalInputError } from "./pack.ts";
import type { Embeddings } from "./metrics.ts";

export const EXECUTION_PROVIDERS = ["cpu", "cuda"] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

/** Embeddings whose L2 norm is further than this from 1 mean the export is not the contract's. */
export const NORM_TOLERANCE = 1e-2;

/** The requested execution provider cannot be used (e.g. CUDA libraries absent): retry elsewhere. */
export class ExecutionProviderUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ExecutionProviderUnavailable";
  }
}

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
};

export type LoadedModel = { uri: string; model: ExportedModel; image: Encoder; text: Encoder; sha256: { image: string; text: string } };

export type SessionOptions = { executionProvider?: ExecutionProvider; intraOpNumThreads?: number };

const withSlash = (uri: string) => (uri.endsWith("/") ? uri : uri + "/");

export async function readModelJson(store: ObjectStore, modelUri: string): Promise<ExportedModel> {
  const uri = withSlash(modelUri) + MODEL_JSON;
  const raw = await store.get(uri);
  if (!raw) throw new EvalInputError("ModelMissing", `${uri} not found`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(raw));
  } catch (e) {
    throw new EvalInputError("InvalidModel", `${uri} is not JSON: ${(e as Error).message}`);
  }
  const parsed = exportedModel.safeParse(json);
  if (!parsed.success) throw new EvalInputError("InvalidModel", `${uri}: ${formatIssues(parsed.error)}`);
  return parsed.data;
}

async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const { createHash } = await import("node:crypto");
  return createHash("sha256").update(bytes).digest("hex");
}

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
  const image = await loadEncoder(uri + model.onnx.image.file, imageBytes, model.onnx.image, [3, S, S], model.embeddingDim, opts);
  const text = await loadEncoder(uri + model.onnx.text.file, textBytes, model.onnx.text, [model.tokenizer.contextLength], model.embeddingDim, opts);
  if (image.inputType !== "float32") throw new EvalInputError("InvalidModel", `${image.file}: image input is ${image.inputType}, expected float32`);
  if (text.inputType === "float32") throw new EvalInputError("InvalidModel", `${text.file}: text input is float32, expected int64 or int32 token ids`);
  return { uri, model, image, text, sha256: { image: await sha256Hex(imageBytes), text: await sha256Hex(textBytes) } };
}

type EncoderJson = ExportedModel["onnx"]["image"];

async function loadEncoder(file: string, bytes: Uint8Array, spec: EncoderJson, rowShape: number[], dim: number, opts: SessionOptions): Promise<Encoder> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(bytes, {
      executionProviders: [opts.executionProvider ?? "cpu"],
      graphOptimizationLevel: "all",
      ...(opts.intraOpNumThreads ? { intraOpNumThreads: opts.intraOpNumThreads } : {}),
    });
  } catch (e) {
    // A missing CUDA provider is the image's or node's problem, not the model's: not a rejection.
    if (/ExecutionProvider/i.test(String((e as Error)?.message))) {
      throw new ExecutionProviderUnavailable(`execution provider ${opts.executionProvider} is not available here: ${firstLine(e)}`);
    }
    throw new EvalInputError("InvalidModel", `${file} is not a loadable ONNX model: ${firstLine(e)}`);
  }
  const bad = (msg: string) => {
    void session.release();
    return new EvalInputError("InvalidModel", `${file}: ${msg}`);
  };
  if (session.inputNames.length !== 1 || session.inputNames[0] !== spec.input.name) {
    throw bad(`inputs are [${session.inputNames.join(", ")}], model.json says [${spec.input.name}]`);
  }
  if (!session.outputNames.includes(spec.output.name)) throw bad(`outputs are [${session.outputNames.join(", ")}], model.json says ${spec.output.name}`);
  const input = session.inputMetadata[0];
  if (!input?.isTensor) throw bad(`input ${spec.input.name} is not a tensor`);
  if (input.type !== spec.input.dtype) throw bad(`input ${spec.input.name} is ${input.type}, model.json says ${spec.input.dtype}`);
  if (input.type !== "float32" && input.type !== "int64" && input.type !== "int32") throw bad(`input type ${input.type} is not supported`);
  const shape = input.shape;
  if (shape.length !== rowShape.length + 1) throw bad(`input ${spec.input.name} has shape [${shape.join(", ")}], expected [batch, ${rowShape.join(", ")}]`);
  rowShape.forEach((want, i) => {
    const got = shape[i + 1];
    if (typeof got === "number" && got > 0 && got !== want) throw bad(`input ${spec.input.name} has shape [${shape.join(", ")}], expected [batch, ${rowShape.join(", ")}]`);
  });
  const out = session.outputMetadata.find((o) => o.name === spec.output.name);
  if (out?.isTensor) {
    const last = out.shape.at(-1);
    if (typeof last === "number" && last > 0 && last !== dim) throw bad(`output ${spec.output.name} has dimension ${last}, model.json says embeddingDim ${dim}`);
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
  };
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split("\n")[0]!.slice(0, 500);
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
  for (let start = 0; start < rows; start += batchSize) {
    const b = Math.min(batchSize, rows - start);
    const slice = input.subarray(start * per, (start + b) * per);
    let tensor: ort.Tensor;
    if (enc.inputType === "float32") tensor = new ort.Tensor("float32", slice as Float32Array, [b, ...enc.rowShape]);
    else if (enc.inputType === "int32") tensor = new ort.Tensor("int32", Int32Array.from(slice), [b, ...enc.rowShape]);
    else tensor = new ort.Tensor("int64", BigInt64Array.from(slice as Int32Array, (v) => BigInt(v)), [b, ...enc.rowShape]);
    let result: ort.InferenceSession.OnnxValueMapType;
    try {
      result = await enc.session.run({ [enc.inputName]: tensor });
    } catch (e) {
      throw new EvalInputError("InferenceFailed", `${enc.file}: inference failed on a batch of ${b}: ${firstLine(e)}`);
    }
    const y = result[enc.outputName] as ort.Tensor | undefined;
    if (!y || y.type !== "float32") throw new EvalInputError("InvalidModel", `${enc.file}: output ${enc.outputName} is ${y?.type ?? "missing"}, expected float32`);
    if (y.dims.length !== 2 || y.dims[0] !== b || y.dims[1] !== enc.dim) {
      throw new EvalInputError("InvalidModel", `${enc.file}: output has shape [${y.dims.join(", ")}] for a batch of ${b}, expected [${b}, ${enc.dim}]`);
    }
    const data = y.data as Float32Array;
    for (let r = 0; r < b; r++) {
      let norm = 0;
      for (let k = 0; k < enc.dim; k++) {
        const v = data[r * enc.dim + k]!;
        if (!Number.isFinite(v)) throw new EvalInputError("NonFiniteEmbeddings", `${enc.file}: embedding of row ${start + r} has a non-finite value (${v})`);
        norm += v * v;
      }
      if (enc.l2Normalized && Math.abs(Math.sqrt(norm) - 1) > NORM_TOLERANCE) {
        throw new EvalInputError("InvalidModel", `${enc.file}: embedding of row ${start + r} has L2 norm ${Math.sqrt(norm).toFixed(4)}, model.json promises unit norm`);
      }
    }
    out.set(data, start * enc.dim);
  }
  return { data: out, rows, dim: enc.dim };
}

export async function releaseModel(m: LoadedModel): Promise<void> {
  await Promise.allSettled([m.image.session.release(), m.text.session.release()]);
}

/** The model and a pack must agree on preprocessing and tokenizer, or the scores mean nothing. */
export function preprocessingMismatch(model: ExportedModel, pack: { preprocessing: PreprocessingSpec }): string | undefined {
  const p = pack.preprocessing;
  const close = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => Math.abs(x - b[i]!) < 1e-6);
  if (p.imageSize !== model.imageSize) return `pack images are ${p.imageSize}px, the model takes ${model.imageSize}px`;
  if (!close(p.mean, model.mean) || !close(p.std, model.std)) return `pack mean/std [${p.mean}]/[${p.std}] differ from the model's [${model.mean}]/[${model.std}]`;
  if (p.tokenizer.name !== model.tokenizer.name) return `pack tokenizer ${p.tokenizer.name} differs from the model's ${model.tokenizer.name}`;
  if (p.tokenizer.contextLength !== model.tokenizer.contextLength) return `pack context length ${p.tokenizer.contextLength} differs from the model's ${model.tokenizer.contextLength}`;
  return undefined;
}
