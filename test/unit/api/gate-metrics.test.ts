// The gate metric lists against their users: every path the evaluator folds is one admission
// accepts, and admission accepts no other metric name.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { gateSpec } from "../../../operator/api/continual-clip-run.ts";
import {
  GATE_METRIC_FORMAT,
  GATE_METRIC_PATTERN,
  RETRIEVAL_METRICS,
  RETRIEVAL_METRICS_AT_K,
  RETRIEVAL_SCOPES,
  ZERO_SHOT_METRICS,
} from "../../../operator/api/gate-metrics.ts";
import { createSimilarityKernel, type SimilarityKernel } from "../../../operator/evaluation/kernel.ts";
import { retrievalMetrics, zeroShotMetrics, type Embeddings } from "../../../operator/evaluation/metrics.ts";
import { roundMetrics } from "../../../operator/evaluation/tic.ts";

const ident = (n: number): Embeddings => ({
  data: Float32Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0)),
  rows: n,
  dim: n,
});
const range = (n: number) => Int32Array.from({ length: n }, (_, i) => i);

let kernel: SimilarityKernel;
before(async () => {
  kernel = await createSimilarityKernel(1);
});
after(() => kernel.release());

describe("gate metrics", () => {
  test("every metric path the evaluator computes is one a gate may name", async () => {
    const e = ident(6);
    const retrieval = await retrievalMetrics(
      kernel,
      { images: e, texts: e, textImage: range(6), textGroup: range(6) },
      [3],
    );
    const zeroShot = await zeroShotMetrics(kernel, e, e, range(6));
    const folded = roundMetrics(
      ["2016", "2017", "2018"].map((sliceId) => ({ sliceId, metrics: retrieval.metrics })),
      ["2017"],
      [{ name: "imagenet-val", metrics: zeroShot.metrics }],
    );
    const paths = Object.keys(folded.metrics);
    for (const scope of RETRIEVAL_SCOPES) {
      for (const m of RETRIEVAL_METRICS) assert.ok(paths.includes(`retrieval.${scope}.${m}`), `${scope}.${m}`);
      for (const m of RETRIEVAL_METRICS_AT_K) assert.ok(paths.includes(`retrieval.${scope}.${m}3`), `${scope}.${m}3`);
    }
    for (const m of ZERO_SHOT_METRICS) assert.ok(paths.includes(`zeroShot.imagenet-val.${m}`));
    for (const p of paths) assert.match(p, GATE_METRIC_PATTERN);
  });

  test("admission refuses other names with a message listing the valid ones", () => {
    for (const metric of [
      "retrieval.id.meanRecallAt5",
      "retrieval.all.meanRecallAt1",
      "zeroShot.in.top2",
      "accuracy",
    ]) {
      const r = gateSpec.safeParse({ metric, op: ">=", value: 0.1 });
      assert.equal(r.success, false, metric);
      assert.ok(r.error!.issues.some((i) => i.message === GATE_METRIC_FORMAT));
    }
    assert.equal(
      GATE_METRIC_FORMAT,
      "retrieval.<id|backward|forward|latest>.<meanRecallAt1|imageToTextRecallAtK|textToImageRecallAtK> or zeroShot.<name>.<top1|top5>",
    );
  });
});
