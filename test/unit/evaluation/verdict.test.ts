import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { judgeRound, statusMetrics } from "../../../operator/evaluation/verdict.ts";
import { evaluateArgs, evalRequestFor } from "../../../operator/evaluation/request.ts";
import { evalRequest, requestBindingProblem } from "../../../operator/api/eval-request.ts";
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

describe("the evaluation request", () => {
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
  const run = { namespace: "ml", name: "b16", uid: "uid-1" };
  const round = {
    spec,
    run,
    round: 3,
    roundSlices: ["2019"],
    slices: ["2016", "2017", "2018", "2019", "2020"],
    promoted: { version: 2, uri: "s3://models/v2/" },
  };

  test("round 3's eval-request.json holds what to score; the Job's command line only where it is", () => {
    const doc = evalRequestFor(round);
    assert.deepEqual(doc, {
      schemaVersion: 1,
      run,
      round: 3,
      roundUri: "s3://runs/b16/rounds/0003/",
      roundSlices: ["2019"],
      sourceUri: "s3://data/slices/",
      slices: ["2016", "2017", "2018", "2019", "2020"],
      zeroShot: [{ name: "imagenet-val", uri: "s3://eval/in/" }],
      k: [1, 5, 10],
      baseline: { version: 2, uri: "s3://models/v2/" },
      executionProvider: "cuda",
      batchSize: 64,
    });
    assert.ok(evalRequest.safeParse(doc).success, "the operator writes what the evaluator accepts");
    assert.deepEqual(evaluateArgs(round), ["evaluate", "--request", "s3://runs/b16/rounds/0003/eval-request.json"]);
  });

  test("a request is bound to the folder it sits in, and to the Job's run and round", () => {
    const doc = evalRequestFor(round);
    const uri = "s3://runs/b16/rounds/0003/eval-request.json";
    assert.equal(requestBindingProblem(uri, doc, { TICCLIP_RUN: "ml/b16", TICCLIP_ROUND: "3" }), undefined);
    const cases: [string, string, NodeJS.ProcessEnv, RegExp][] = [
      ["in another round's folder", "s3://runs/b16/rounds/0004/eval-request.json", {}, /names round folder/],
      ["naming round 4 in round 3's folder", uri, {}, /names round 4, but sits in the folder of round 3/],
      ["for another Job's round", uri, { TICCLIP_ROUND: "4" }, /this Job evaluates round 4/],
      ["of another run", uri, { TICCLIP_RUN: "ml/other" }, /this Job belongs to ml\/other/],
    ];
    for (const [what, at, env, says] of cases) {
      const d = what.startsWith("naming round 4") ? { ...doc, round: 4 } : doc;
      assert.match(requestBindingProblem(at, d, env) ?? "accepted", says, what);
    }
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
