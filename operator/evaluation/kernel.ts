// The similarity kernel: one ONNX Gemm (Y = A · Bᵀ) run by onnxruntime on the evaluator's own
// session options, so a block of query rows against every candidate costs one MLAS SGEMM call
// (AVX-512/AMX, intra-op threads) instead of a JavaScript dot-product loop (50x slower at 10k x 10k).
// The graph is a dozen protobuf fields, written here rather than shipped as a binary file.
import * as ort from "onnxruntime-node";

/** Row-major matrix of `rows` embeddings of length `dim`. */
export type Embeddings = { data: Float32Array; rows: number; dim: number };

/** Scores a block of query rows against all candidate rows: `[rows, candidates.rows]`, row-major. */
export type SimilarityKernel = {
  scores(queries: Float32Array, rows: number, candidates: Embeddings): Promise<Float32Array>;
  release(): Promise<void>;
};

// Protobuf wire format: varint (0) and length-delimited (2) fields are all ONNX's ModelProto needs here.
type Field = [number, number | string | Uint8Array];

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

function message(fields: Field[]): Uint8Array {
  const parts: number[] = [];
  for (const [num, value] of fields) {
    if (typeof value === "number") {
      parts.push(...varint(num * 8), ...varint(value));
      continue;
    }
    const bytes = typeof value === "string" ? new TextEncoder().encode(value) : value;
    parts.push(...varint(num * 8 + 2), ...varint(bytes.length), ...bytes);
  }
  return Uint8Array.from(parts);
}

const FLOAT = 1;
const ATTRIBUTE_INT = 2;

/** A float32 matrix input or output `[rows, cols]` with symbolic dimensions. */
function matrix(name: string, rows: string, cols: string): Uint8Array {
  const dim = (param: string) => message([[2, param]]);
  const shape = message([
    [1, dim(rows)],
    [1, dim(cols)],
  ]);
  const tensorType = message([
    [1, FLOAT],
    [2, shape],
  ]);
  return message([
    [1, name],
    [2, message([[1, tensorType]])],
  ]);
}

/** ModelProto of `Y = Gemm(A, B, transB=1)`, opset 17. */
export function gemmModel(): Uint8Array {
  const transB = message([
    [1, "transB"],
    [20, ATTRIBUTE_INT],
    [3, 1],
  ]);
  const node = message([
    [1, "A"],
    [1, "B"],
    [2, "Y"],
    [3, "scores"],
    [4, "Gemm"],
    [5, transB],
  ]);
  const graph = message([
    [1, node],
    [2, "similarity"],
    [11, matrix("A", "queries", "dim")],
    [11, matrix("B", "candidates", "dim")],
    [12, matrix("Y", "queries", "candidates")],
  ]);
  return message([
    [1, 8],
    [2, "continual-clip-operator"],
    [7, graph],
    [
      8,
      message([
        [1, ""],
        [2, 17],
      ]),
    ],
  ]);
}

export async function createSimilarityKernel(intraOpNumThreads?: number): Promise<SimilarityKernel> {
  const session = await ort.InferenceSession.create(gemmModel(), {
    executionProviders: ["cpu"],
    graphOptimizationLevel: "all",
    ...(intraOpNumThreads ? { intraOpNumThreads } : {}),
  });
  return {
    async scores(queries, rows, candidates) {
      const d = candidates.dim;
      if (queries.length !== rows * d) throw new Error(`similarity: ${queries.length} values for ${rows} rows of ${d}`);
      // MLAS takes a GEMV path for a single row whose sums round differently from the GEMM path;
      // padding to two rows keeps every score of a pack computed the same way, so ties are exact.
      const padded = rows === 1 ? Float32Array.from([...queries, ...queries]) : queries;
      const a = new ort.Tensor("float32", padded, [Math.max(rows, 2), d]);
      const b = new ort.Tensor("float32", candidates.data, [candidates.rows, d]);
      const out = await session.run({ A: a, B: b });
      const y = out.Y!.data as Float32Array;
      return rows === 1 ? y.subarray(0, candidates.rows) : y;
    },
    release: () => session.release(),
  };
}
