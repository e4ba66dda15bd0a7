import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  relationOf,
  roundMetrics,
  slicesToScore,
  ticMatrix,
  type SliceScore,
} from "../../../operator/evaluation/tic.ts";
import type { RetrievalMetrics } from "../../../operator/evaluation/metrics.ts";

const rm = (v: number): RetrievalMetrics => ({ imageToTextRecallAt1: v, textToImageRecallAt1: v, meanRecallAt1: v });

describe("slicesToScore", () => {
  const cases = [
    {
      name: "first round: its slice and the next",
      packs: ["2016", "2017", "2018"],
      round: ["2016"],
      want: ["2016", "2017"],
    },
    {
      name: "middle round: all seen plus the next",
      packs: ["2018", "2016", "2017", "2019"],
      round: ["2018"],
      want: ["2016", "2017", "2018", "2019"],
    },
    { name: "last round: no next slice yet", packs: ["2016", "2017"], round: ["2017"], want: ["2016", "2017"] },
    {
      name: "a coalesced round (roundPolicy Latest)",
      packs: ["2016", "2017", "2018", "2019"],
      round: ["2017", "2016"],
      want: ["2016", "2017", "2018"],
    },
    { name: "slices without packs are skipped", packs: ["2016", "2019"], round: ["2017"], want: ["2016", "2019"] },
  ];
  for (const c of cases) test(c.name, () => assert.deepEqual(slicesToScore(c.packs, c.round), c.want));
});

describe("relationOf", () => {
  test("classifies by the round's slices in slice order", () => {
    assert.equal(relationOf("2016", ["2017"]), "backward");
    assert.equal(relationOf("2017", ["2017"]), "id");
    assert.equal(relationOf("2017-03", ["2017"]), "backward"); // '2017-03/' sorts before '2017/'
    assert.equal(relationOf("2018", ["2017"]), "forward");
  });
});

describe("roundMetrics", () => {
  test("means per relation, latest is the round's newest slice, zero-shot paths", () => {
    const scores: SliceScore[] = [
      { sliceId: "2016", metrics: rm(0.2) },
      { sliceId: "2017", metrics: rm(0.4) },
      { sliceId: "2018", metrics: rm(0.6) },
      { sliceId: "2019", metrics: rm(0.1) },
      { sliceId: "2020", metrics: rm(0.05) },
    ];
    const r = roundMetrics(scores, ["2018", "2017"], [{ name: "imagenet-val", metrics: { top1: 0.3, top5: 0.7 } }]);
    assert.ok(Math.abs(r.metrics["retrieval.id.meanRecallAt1"]! - 0.5) < 1e-12);
    assert.equal(r.metrics["retrieval.backward.meanRecallAt1"], 0.2);
    assert.ok(Math.abs(r.metrics["retrieval.forward.meanRecallAt1"]! - 0.075) < 1e-12);
    assert.equal(r.metrics["retrieval.latest.meanRecallAt1"], 0.6);
    assert.equal(r.metrics["zeroShot.imagenet-val.top5"], 0.7);
    assert.deepEqual(r.notApplicable, {});
  });

  test("round 0 has no backward and the newest round no forward: reported as not applicable", () => {
    const r = roundMetrics([{ sliceId: "2016", metrics: rm(0.3) }], ["2016"], []);
    assert.deepEqual(Object.keys(r.notApplicable).sort(), ["retrieval.backward", "retrieval.forward"]);
    assert.equal(r.metrics["retrieval.id.meanRecallAt1"], 0.3);
  });

  test("a round whose own slice has no pack has no id metric (a gate on it fails)", () => {
    const r = roundMetrics([{ sliceId: "2016", metrics: rm(0.3) }], ["2017"], []);
    assert.equal(r.metrics["retrieval.id.meanRecallAt1"], undefined);
    assert.equal(r.notApplicable["retrieval.id"], undefined);
  });
});

describe("ticMatrix", () => {
  test("builds E[i][j] with nulls where not scored and TiC summaries over cells", () => {
    const m = ticMatrix([
      { round: 1, roundSlices: ["b"], cells: { a: 0.5, b: 0.6, c: 0.2 } },
      { round: 0, roundSlices: ["a"], cells: { a: 0.4, b: 0.1 } },
      { round: 2, roundSlices: ["c"], cells: { a: 0.45, b: 0.55, c: 0.7 } },
    ]);
    assert.deepEqual(m.rounds, [0, 1, 2]);
    assert.deepEqual(m.slices, ["a", "b", "c"]);
    assert.deepEqual(m.values, [
      [0.4, 0.1, null],
      [0.5, 0.6, 0.2],
      [0.45, 0.55, 0.7],
    ]);
    assert.ok(Math.abs(m.summary.id! - (0.4 + 0.6 + 0.7) / 3) < 1e-12);
    assert.ok(Math.abs(m.summary.backward! - (0.5 + 0.45 + 0.55) / 3) < 1e-12);
    assert.ok(Math.abs(m.summary.forward! - (0.1 + 0.2) / 2) < 1e-12);
  });

  test("a re-evaluated round replaces its earlier row; empty input gives null summaries", () => {
    const m = ticMatrix([
      { round: 0, roundSlices: ["a"], cells: { a: 0.1 } },
      { round: 0, roundSlices: ["a"], cells: { a: 0.3 } },
    ]);
    assert.deepEqual(m.values, [[0.3]]);
    assert.deepEqual(ticMatrix([]).summary, { id: null, backward: null, forward: null });
  });
});
