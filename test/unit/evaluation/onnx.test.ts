import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { encoderBatch, optimizedCacheName, threadsFor } from "../../../operator/evaluation/onnx.ts";

describe("threadsFor", () => {
  const cases: [string, number | undefined, number | undefined, number, number][] = [
    ["no CPU limit uses every available CPU", undefined, undefined, 8, 8],
    ["a limit of 2 CPUs gives 2 threads", 200000, 100000, 8, 2],
    ["a fractional limit rounds up", 150000, 100000, 8, 2],
    ["a limit above the CPUs is capped by them", 1600000, 100000, 4, 4],
    ["a tiny limit still gets one thread", 10000, 100000, 8, 1],
  ];
  for (const [name, quota, period, available, want] of cases) test(name, () => assert.equal(threadsFor(quota, period, available), want));
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
