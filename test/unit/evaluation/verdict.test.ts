import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { judgeRound, statusMetrics } from "../../../operator/evaluation/verdict.ts";
import { evaluateArgs, evaluateEnv, requestInputs } from "../../../operator/evaluation/request.ts";
import { isRoundApproved } from "../../../operator/promotion/approval.ts";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import type { EvalResult, ModelScores } from "../../../operator/api/eval-result.ts";

const scores = (m: Record<string, number>): ModelScores => ({
  uri: "s3://r/rounds/0001/",
  architecture: "ticclip-tiny",
  embeddingDim: 64,
  sha256: { image: "a", text: "b" },
  retrieval: [],
  zeroShot: [],
  metrics: m,
  notApplicable: { "retrieval.forward": "no slice after this round's slices has an eval pack yet" },
});
const base = {
  schemaVersion: 1 as const,
  round: 1,
  roundUri: "s3://r/rounds/0001/",
  roundSlices: ["2017"],
  evaluatedAt: "t",
};
const ok = (m: Record<string, number>, baseline?: Record<string, number>): EvalResult => ({
  ...base,
  status: "Succeeded",
  k: [1, 5],
  candidate: scores(m),
  ...(baseline ? { baseline: { ...scores(baseline), version: 3 } } : {}),
  matrix: {
    metric: "meanRecallAt1",
    rounds: [1],
    roundSlices: [["2017"]],
    slices: ["2017"],
    values: [[0.4]],
    summary: { id: 0.4, backward: null, forward: null },
  },
  timing: { seconds: 1, imagesEncoded: 1, textsEncoded: 1, executionProvider: "cpu" },
});

describe("judgeRound", () => {
  test("a failed evaluation rejects the round with the evaluator's reason", () => {
    const v = judgeRound({ ...base, status: "Failed", reason: "NonFiniteEmbeddings", message: "row 3 is NaN" }, []);
    assert.deepEqual(v, { passed: false, reason: "NonFiniteEmbeddings", message: "evaluation failed: row 3 is NaN" });
  });

  test("regression is judged against the rescored baseline in eval.json before status.promoted", () => {
    const gates = [{ metric: "retrieval.id.meanRecallAt1", maxRegression: 0.05 }];
    const v = judgeRound(ok({ "retrieval.id.meanRecallAt1": 0.4 }, { "retrieval.id.meanRecallAt1": 0.5 }), gates, {
      version: 3,
      metrics: { "retrieval.id.meanRecallAt1": 0.1 },
    });
    assert.equal(v.passed, false);
    assert.ok(!v.passed && v.reason === "GatesFailed" && /promoted v3's 0\.5/.test(v.message));
    const fallback = judgeRound(ok({ "retrieval.id.meanRecallAt1": 0.4 }), gates, {
      version: 3,
      metrics: { "retrieval.id.meanRecallAt1": 0.1 },
    });
    assert.equal(fallback.passed, true);
    assert.match(fallback.gates![0]!.message, /not rescored on this round's packs/);
  });

  test("status metrics keep meanRecallAt1s, zero-shot, gated metrics and the TiC summary", () => {
    const ev = ok({
      "retrieval.id.meanRecallAt1": 0.4,
      "retrieval.id.imageToTextRecallAt5": 0.9,
      "retrieval.id.textToImageRecallAt5": 0.8,
      "zeroShot.x.top5": 0.7,
    });
    assert.ok(ev.status === "Succeeded");
    assert.deepEqual(statusMetrics(ev, [{ metric: "retrieval.id.textToImageRecallAt5", op: ">=", value: 0 }]), {
      "retrieval.id.meanRecallAt1": 0.4,
      "retrieval.id.textToImageRecallAt5": 0.8,
      "zeroShot.x.top5": 0.7,
      "tic.id.meanRecallAt1": 0.4,
    });
  });
});

describe("evaluateArgs", () => {
  const spec = continualClipRunSpec.parse({
    source: { s3: { bucket: "data", prefix: "slices/", endpoint: "http://minio:9000" } },
    model: { architecture: "ViT-B-16" },
    strategy: { samplesPerRound: 1000 },
    trainer: { image: "t:1" },
    artifacts: { s3: { bucket: "runs", prefix: "b16/" } },
    evaluation: {
      zeroShot: [{ name: "imagenet-val", uri: "s3://eval/in/" }],
      runner: { executionProvider: "cuda", gpus: 1 },
    },
  });
  test("builds the evaluate command line of round 3 from the spec", () => {
    assert.deepEqual(
      evaluateArgs({
        spec,
        round: 3,
        roundSlices: ["2019"],
        slices: ["2016", "2017", "2018", "2019", "2020"],
        promoted: { version: 2, uri: "s3://m/v2/" },
      }),
      [
        "evaluate",
        "--round-uri",
        "s3://runs/b16/rounds/0003/",
        "--round",
        "3",
        "--round-slices",
        "2019",
        "--source-uri",
        "s3://data/slices/",
        "--slices",
        "2016,2017,2018,2019,2020",
        "--zero-shot",
        "imagenet-val=s3://eval/in/",
        "--k",
        "1,5,10",
        "--baseline-uri",
        "s3://m/v2/",
        "--baseline-version",
        "2",
        "--execution-provider",
        "cuda",
        "--batch-size",
        "64",
      ],
    );
    assert.deepEqual(evaluateEnv(spec), { AWS_REGION: "us-east-1", S3_ENDPOINT: "http://minio:9000" });
    assert.equal(
      requestInputs({ spec, round: 3, roundSlices: ["2019"], slices: [] }).roundUri,
      "s3://runs/b16/rounds/0003/",
    );
  });
});

describe("isRoundApproved", () => {
  const cases: [Record<string, string> | undefined, number, boolean][] = [
    [undefined, 1, false],
    [{ "ticclip.dev/approve-round": "7" }, 7, true],
    [{ "ticclip.dev/approve-round": "7" }, 17, false],
    [{ "ticclip.dev/approve-round": "3, 7" }, 7, true],
    [{ "ticclip.dev/approve-round": "latest" }, 7, false],
  ];
  for (const [ann, round, want] of cases)
    test(`${JSON.stringify(ann)} approves round ${round}: ${want}`, () =>
      assert.equal(isRoundApproved(ann, round), want));
});
