import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { decideGates, type Baseline, type Gate } from "../../../operator/evaluation/gates.ts";
import type { RoundMetrics } from "../../../operator/evaluation/tic.ts";

const round: RoundMetrics = {
  metrics: { "retrieval.id.meanRecallAt1": 0.35, "zeroShot.imagenet-val.top1": 0.5 },
  notApplicable: { "retrieval.backward": "no slice before this round's slices has an eval pack" },
};
const baseline: Baseline = {
  version: 3,
  metrics: { "retrieval.id.meanRecallAt1": 0.4, "zeroShot.imagenet-val.top1": 0.505 },
  rescoredOnSamePacks: true,
};

describe("decideGates", () => {
  const cases: {
    name: string;
    gate: Gate;
    baseline?: Baseline;
    passed: boolean;
    threshold: number | null;
    message: RegExp;
  }[] = [
    {
      name: "absolute bound met",
      gate: { metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0.3 },
      passed: true,
      threshold: 0.3,
      message: /0\.35 >= 0\.3/,
    },
    {
      name: "absolute bound missed",
      gate: { metric: "retrieval.id.meanRecallAt1", op: ">", value: 0.35 },
      passed: false,
      threshold: 0.35,
      message: /not >/,
    },
    {
      name: "upper bound",
      gate: { metric: "retrieval.id.meanRecallAt1", op: "<", value: 0.9 },
      passed: true,
      threshold: 0.9,
      message: /</,
    },
    {
      name: "regression within the allowance",
      gate: { metric: "zeroShot.imagenet-val.top1", maxRegression: 0.01 },
      baseline,
      passed: true,
      threshold: 0.495,
      message: /promoted v3/,
    },
    {
      name: "regression beyond the allowance",
      gate: { metric: "retrieval.id.meanRecallAt1", maxRegression: 0.01 },
      baseline,
      passed: false,
      threshold: 0.39,
      message: /0\.35 < promoted v3's 0\.4 - 0\.01/,
    },
    {
      name: "no promoted model yet: regression gates pass",
      gate: { metric: "retrieval.id.meanRecallAt1", maxRegression: 0 },
      passed: true,
      threshold: null,
      message: /no promoted model/,
    },
    {
      name: "both kinds: the binding threshold is reported",
      gate: { metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0.2, maxRegression: 0.1 },
      baseline,
      passed: true,
      threshold: 0.30000000000000004,
      message: /0\.35 >= 0\.2; 0\.35 >= promoted/,
    },
    {
      name: "not applicable this round passes with the reason",
      gate: { metric: "retrieval.backward.meanRecallAt1", op: ">=", value: 0.9 },
      passed: true,
      threshold: null,
      message: /not applicable: no slice before/,
    },
    {
      name: "metric not computed fails clearly",
      gate: { metric: "retrieval.id.imageToTextRecallAt20", op: ">=", value: 0.1 },
      passed: false,
      threshold: null,
      message: /was not computed.*retrieval\.id\.meanRecallAt1/,
    },
    {
      name: "unknown zero-shot pack fails",
      gate: { metric: "zeroShot.coco.top1", op: ">=", value: 0.1 },
      passed: false,
      threshold: null,
      message: /zeroShot\.coco\.top1 was not computed/,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const d = decideGates([c.gate], round, c.baseline);
      const r = d.results[0]!;
      assert.equal(r.passed, c.passed, r.message);
      assert.equal(d.passed, c.passed);
      assert.equal(r.threshold, c.threshold);
      assert.match(r.message, c.message);
      assert.equal(r.observed, round.metrics[c.gate.metric] ?? null);
    });
  }

  test("passes with no gates and summarises failures by metric", () => {
    assert.equal(decideGates([], round, undefined).passed, true);
    const d = decideGates(
      [
        { metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0.5 },
        { metric: "zeroShot.imagenet-val.top1", op: ">=", value: 0.1 },
      ],
      round,
      undefined,
    );
    assert.equal(d.passed, false);
    assert.match(d.message, /^failed gates: retrieval\.id\.meanRecallAt1/);
    assert.doesNotMatch(d.message, /zeroShot/);
  });
});
