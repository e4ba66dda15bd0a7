import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { gemmModel } from "../../../operator/evaluation/kernel.ts";
import { encoderBatch, loadModel, optimizedCacheName } from "../../../operator/evaluation/onnx.ts";
import { ExecutionProviderUnavailable, threadsFor } from "../../../operator/evaluation/runtime.ts";
import { MemoryObjectStore } from "../../../operator/s3/object-store.ts";

describe("threadsFor", () => {
  const cases: [string, number | undefined, number | undefined, number, number][] = [
    ["no CPU limit uses every available CPU", undefined, undefined, 8, 8],
    ["a limit of 2 CPUs gives 2 threads", 200000, 100000, 8, 2],
    ["a fractional limit rounds up", 150000, 100000, 8, 2],
    ["a limit above the CPUs is capped by them", 1600000, 100000, 4, 4],
    ["a tiny limit still gets one thread", 10000, 100000, 8, 1],
  ];
  for (const [name, quota, period, available, want] of cases)
    test(name, () => assert.equal(threadsFor(quota, period, available), want));
});

describe("encoderBatch", () => {
  test("224 px images on CPU run 32 at a time, small inputs keep the requested batch", () => {
    assert.equal(encoderBatch(64, [3, 224, 224]), 32);
    assert.equal(encoderBatch(64, [3, 32, 32]), 64);
    assert.equal(encoderBatch(64, [77]), 64);
    assert.equal(encoderBatch(16, [3, 224, 224]), 16);
  });
  test("CUDA keeps the requested batch", () => assert.equal(encoderBatch(256, [3, 224, 224], "cuda"), 256));
});

test("optimised graphs are cached under a name keyed by the source model and provider", () => {
  const a = optimizedCacheName("s3://r/rounds/0001/image_encoder.onnx", "aa", "cpu");
  assert.match(a, /^image_encoder\.[0-9a-f]{16}\.optimized\.onnx$/);
  assert.notEqual(a, optimizedCacheName("s3://r/rounds/0001/image_encoder.onnx", "ab", "cpu"));
  assert.notEqual(a, optimizedCacheName("s3://r/rounds/0001/image_encoder.onnx", "aa", "cuda"));
});

test("cuda without onnxruntime's CUDA provider libraries is an environment error, not a rejected model", async () => {
  const store = new MemoryObjectStore();
  const io = (name: string, dtype: string, shape: (number | string)[]) => ({ name, dtype, shape });
  const encoder = (file: string, input: ReturnType<typeof io>) => ({
    file,
    input,
    output: { ...io("Y", "float32", ["batch", 4]), l2Normalized: true },
  });
  const model = {
    architecture: "gemm",
    embeddingDim: 4,
    imageSize: 2,
    resize: { mode: "shortest", interpolation: "bicubic", crop: "center" },
    mean: [0, 0, 0],
    std: [1, 1, 1],
    tokenizer: { name: "t", contextLength: 4 },
    onnx: {
      image: encoder("image_encoder.onnx", io("A", "float32", ["batch", 3, 2, 2])),
      text: encoder("text_encoder.onnx", io("A", "int64", ["batch", 4])),
    },
  };
  store.objects.set("s3://r/rounds/0000/model.json", new TextEncoder().encode(JSON.stringify(model)));
  // Any loadable graph will do: the provider fails before the model's inputs are looked at.
  store.objects.set("s3://r/rounds/0000/image_encoder.onnx", gemmModel());
  store.objects.set("s3://r/rounds/0000/text_encoder.onnx", gemmModel());
  await assert.rejects(loadModel(store, "s3://r/rounds/0000/", { executionProvider: "cuda" }), (e) => {
    assert.ok(e instanceof ExecutionProviderUnavailable, String(e));
    assert.match(e.message, /execution provider cuda is not available here/);
    return true;
  });
});
