// Reads eval packs (operator/api/eval-pack.ts) from an ObjectStore: validates the manifest, checks
// every shard's size and sha256, decodes tensors. Problems are EvalInputError with a clear reason.
import { withSlash } from "../api/common.ts";
import { createHash } from "node:crypto";
import {
  DTYPE_BYTES,
  evalPackManifest,
  PACK_MANIFEST,
  type EvalPackManifest,
  type PreprocessingSpec,
  type TensorSpec,
} from "../api/eval-pack.ts";
import { DOCUMENT_LIMITS, readDocument } from "../s3/documents.ts";
import type { ObjectStore } from "../s3/object-store.ts";

/** Bad input (pack, model, embeddings): the round is Rejected with this reason, never retried. */
export class EvalInputError extends Error {
  readonly reason: string;
  constructor(reason: string, message: string) {
    super(message);
    this.name = "EvalInputError";
    this.reason = reason;
  }
}

export type OpenPack = { uri: string; manifest: EvalPackManifest };

const prod = (xs: readonly number[]) => xs.reduce((a, b) => a * b, 1);

export async function openPack(store: ObjectStore, packUri: string): Promise<OpenPack> {
  const uri = withSlash(packUri);
  const read = await readDocument(store, uri + PACK_MANIFEST, DOCUMENT_LIMITS.small, evalPackManifest);
  if (!read) throw new EvalInputError("EvalPackMissing", `no eval pack at ${uri}: ${PACK_MANIFEST} not found`);
  if ("invalid" in read) throw new EvalInputError("InvalidEvalPack", `${uri}${PACK_MANIFEST}: ${read.invalid}`);
  const problems = manifestProblems(read.value);
  if (problems.length) throw new EvalInputError("InvalidEvalPack", `${uri}${PACK_MANIFEST}: ${problems.join("; ")}`);
  return { uri, manifest: read.value };
}

/** Consistency the schema cannot express: counts, shapes, byte sizes, dtypes agree. */
export function manifestProblems(m: EvalPackManifest): string[] {
  const p: string[] = [];
  const tensor = (name: string, t: TensorSpec, dtypes: readonly string[], shape: (number | undefined)[]) => {
    if (!dtypes.includes(t.dtype)) p.push(`${name}: dtype ${t.dtype}, expected ${dtypes.join(" or ")}`);
    if (t.shape.length !== shape.length)
      p.push(`${name}: shape [${t.shape}] has ${t.shape.length} dimensions, expected ${shape.length}`);
    shape.forEach((want, i) => {
      if (want !== undefined && t.shape[i] !== want)
        p.push(`${name}: shape [${t.shape}], dimension ${i} should be ${want}`);
    });
    const rows = t.shards.reduce((s, sh) => s + sh.rows, 0);
    if (rows !== t.shape[0]) p.push(`${name}: shards hold ${rows} rows, shape says ${t.shape[0]}`);
    const rowBytes = prod(t.shape.slice(1)) * DTYPE_BYTES[t.dtype];
    for (const sh of t.shards) {
      if (sh.bytes !== sh.rows * rowBytes)
        p.push(
          `${name}: ${sh.file} is declared ${sh.bytes} bytes, ${sh.rows} rows of [${t.shape.slice(1)}] ${t.dtype} are ${sh.rows * rowBytes}`,
        );
    }
  };
  const S = m.preprocessing.imageSize;
  const L = m.preprocessing.tokenizer.contextLength;
  tensor("images", m.images, ["uint8"], [undefined, 3, S, S]);
  if (m.kind === "retrieval") {
    tensor("texts", m.texts, ["int32", "int64"], [undefined, L]);
    tensor("textImage", m.textImage, ["int32"], [m.texts.shape[0]]);
  } else {
    const C = m.classNames.length;
    tensor("labels", m.labels, ["int32"], [m.images.shape[0]]);
    tensor("prompts", m.prompts, ["int32", "int64"], [C * m.templates.length, L]);
  }
  const files = [m.images, ...(m.kind === "retrieval" ? [m.texts, m.textImage] : [m.labels, m.prompts])].flatMap((t) =>
    t.shards.map((s) => s.file),
  );
  const dup = files.find((f, i) => files.indexOf(f) !== i);
  if (dup) p.push(`file ${dup} is used twice`);
  return p;
}

/** Reads a tensor's shards in order, each checked against its declared size and sha256. */
export async function* readShards(
  store: ObjectStore,
  pack: OpenPack,
  name: string,
  t: TensorSpec,
): AsyncGenerator<{ row: number; rows: number; bytes: Uint8Array }> {
  let row = 0;
  for (const sh of t.shards) {
    const bytes = await store.get(pack.uri + sh.file);
    if (!bytes) throw new EvalInputError("InvalidEvalPack", `${pack.uri}${sh.file} (${name}) is missing`);
    if (bytes.length !== sh.bytes)
      throw new EvalInputError(
        "InvalidEvalPack",
        `${pack.uri}${sh.file} (${name}) is ${bytes.length} bytes, the manifest says ${sh.bytes}`,
      );
    const digest = createHash("sha256").update(bytes).digest("hex");
    if (digest !== sh.sha256)
      throw new EvalInputError(
        "InvalidEvalPack",
        `${pack.uri}${sh.file} (${name}) has sha256 ${digest}, the manifest says ${sh.sha256}`,
      );
    yield { row, rows: sh.rows, bytes };
    row += sh.rows;
  }
}

/** A whole integer tensor as Int32Array (int64 values must fit in int32). */
export async function readInts(store: ObjectStore, pack: OpenPack, name: string, t: TensorSpec): Promise<Int32Array> {
  const out = new Int32Array(prod(t.shape));
  const per = prod(t.shape.slice(1));
  for await (const sh of readShards(store, pack, name, t)) {
    const view = new DataView(sh.bytes.buffer, sh.bytes.byteOffset, sh.bytes.byteLength);
    const n = sh.rows * per;
    for (let i = 0; i < n; i++) {
      if (t.dtype === "int32") out[sh.row * per + i] = view.getInt32(i * 4, true);
      else {
        const v = view.getBigInt64(i * 8, true);
        if (v < -2147483648n || v > 2147483647n)
          throw new EvalInputError("InvalidEvalPack", `${name}: value ${v} does not fit in int32`);
        out[sh.row * per + i] = Number(v);
      }
    }
  }
  return out;
}

const luts = new WeakMap<PreprocessingSpec, Float32Array[]>();

/** 256 possible inputs per channel: a lookup table computed with float32 rounding at each step. */
function lutsFor(pre: PreprocessingSpec): Float32Array[] {
  let lut = luts.get(pre);
  if (!lut) {
    lut = [0, 1, 2].map((c) => {
      const t = new Float32Array(256);
      const mean = Math.fround(pre.mean[c]!);
      const std = Math.fround(pre.std[c]!);
      for (let v = 0; v < 256; v++) t[v] = Math.fround(Math.fround(Math.fround(v / 255) - mean) / std);
      return t;
    });
    luts.set(pre, lut);
  }
  return lut;
}

/**
 * uint8 RGB NCHW -> float32 ((x / 255) - mean) / std, as the trainer's preprocess.py does in float32.
 * Writes into `out` when given (a buffer reused batch after batch) and returns the filled part.
 */
export function normalizeImages(bytes: Uint8Array, pre: PreprocessingSpec, out?: Float32Array): Float32Array {
  const plane = pre.imageSize * pre.imageSize;
  const lut = lutsFor(pre);
  const dst = out ? out.subarray(0, bytes.length) : new Float32Array(bytes.length);
  if (dst.length !== bytes.length)
    throw new Error(`normalizeImages: buffer of ${out!.length} values for ${bytes.length} pixels`);
  for (let start = 0, c = 0; start < bytes.length; start += plane, c = (c + 1) % 3) {
    const t = lut[c]!;
    for (let i = start, end = start + plane; i < end; i++) dst[i] = t[bytes[i]!]!;
  }
  return dst;
}
