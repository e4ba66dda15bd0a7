// Table tests of the round state machine: observed world in, actions and round status out.
import { test } from "node:test";
import assert from "node:assert/strict";
import { continualClipRunSpec, type ContinualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { roundPlan, type RoundPlan } from "../../../operator/api/round-plan.ts";
import { decideRounds, type RoundObservation, type RoundsInput } from "../../../operator/controller/rounds.ts";
import type { Slice } from "../../../operator/data/validate.ts";
import type { EvalResult } from "../../../operator/api/eval-result.ts";

const NOW = new Date("2026-05-01T00:00:00Z");
const RUN = { name: "demo", namespace: "ns", uid: "uid-1", generation: 1 };

function spec(overrides: Record<string, any> = {}): ContinualClipRunSpec {
  return continualClipRunSpec.parse({
    source: { s3: { bucket: "data", prefix: "slices/" } },
    model: { architecture: "ticclip-tiny", initialCheckpoint: "s3://models/init.pt" },
    strategy: { samplesPerRound: 1000, ...(overrides.strategy ?? {}) },
    trainer: { image: "trainer:1", gpusPerNode: 1 },
    artifacts: { s3: { bucket: "runs", prefix: "demo/" } },
    ...Object.fromEntries(Object.entries(overrides).filter(([k]) => k !== "strategy")),
  });
}

const slice = (id: string, samples = 100): Slice => ({
  id,
  uri: `s3://data/slices/${id}/`,
  createdAt: "2026-01-01T00:00:00Z",
  numSamples: samples,
  shards: [{ key: "shard-0.tar", uri: `s3://data/slices/${id}/shard-0.tar`, samples, bytes: 10 }],
  fingerprint: id,
});

function planFor(index: number, newSlices: string[], init: string | null): RoundPlan {
  return {
    schemaVersion: 1,
    run: { namespace: "ns", name: "demo", uid: "uid-1" },
    round: index,
    newSlices,
    replay: "CumulativeAll",
    model: { architecture: "ticclip-tiny", initCheckpoint: init },
    data: {
      sources: [
        { sliceId: newSlices[0]!, shards: [{ uri: "s3://x/y.tar", samples: 100 }], weight: 1, expectedShare: 1 },
      ],
      samples: 1000,
    },
    optimizer: { lr: 5e-4, weightDecay: 0.2, warmupSteps: 0, batchSize: 8192, precision: "amp_bf16" },
    output: { uri: `s3://runs/demo/rounds/${String(index).padStart(4, "0")}/` },
    checkpointIntervalMinutes: 30,
    seed: index,
    s3: { region: "us-east-1", endpoint: null },
  };
}

function evaluated(index: number, slices: string[], recall: number): EvalResult {
  const scores = {
    uri: `s3://runs/demo/rounds/000${index}/`,
    architecture: "ticclip-tiny",
    embeddingDim: 32,
    sha256: { image: "a", text: "b" },
    retrieval: [],
    zeroShot: [],
    metrics: { "retrieval.id.meanRecallAt1": recall },
    notApplicable: {},
  };
  return {
    schemaVersion: 1,
    status: "Succeeded",
    round: index,
    roundUri: scores.uri,
    roundSlices: slices,
    evaluatedAt: "2026-04-01T02:00:00Z",
    k: [1],
    candidate: scores,
    matrix: {
      metric: "meanRecallAt1",
      rounds: [index],
      roundSlices: [slices],
      slices,
      values: [[recall]],
      summary: { id: recall, backward: null, forward: null },
    },
    timing: { seconds: 1, imagesEncoded: 1, textsEncoded: 1, executionProvider: "cpu" },
  };
}

/** Trained and evaluated (recall 0.5), not promoted. */
const trained = (index: number, slices: string[], init: string | null = null, recall = 0.5): RoundObservation => ({
  index,
  files: new Set([
    "plan.json",
    "_SUCCESS",
    "checkpoint.pt",
    "image_encoder.onnx",
    "text_encoder.onnx",
    "model.json",
    "eval.json",
    "compute.json",
  ]),
  evaluation: evaluated(index, slices, recall),
  // The encoders in the folder are the ones eval.json scored.
  digests: { image: "a", text: "b" },
  plan: planFor(index, slices, init),
  job: {
    name: `demo-r000${index}-train`,
    active: 0,
    succeeded: 1,
    failed: 0,
    complete: true,
    startTime: "2026-04-01T00:00:00Z",
    completionTime: "2026-04-01T01:00:00Z",
  },
});
const running = (index: number, slices: string[]): RoundObservation => ({
  index,
  files: new Set(["plan.json"]),
  plan: planFor(index, slices, null),
  job: { name: `demo-r000${index}-train`, active: 1, succeeded: 0, failed: 0, complete: false },
});
const failedJob = (index: number, slices: string[], init: string | null = null): RoundObservation => ({
  index,
  files: new Set(["plan.json"]),
  plan: planFor(index, slices, init),
  job: {
    name: `demo-r000${index}-train`,
    active: 0,
    succeeded: 0,
    failed: 3,
    complete: false,
    failure: { reason: "BackoffLimitExceeded", message: "trainer exited 137 (OOMKilled)" },
  },
});
const failedRecorded = (index: number, slices: string[], init: string | null, generation = 1): RoundObservation => ({
  index,
  files: new Set(["plan.json", "failed.json"]),
  plan: planFor(index, slices, init),
  failure: { reason: "BackoffLimitExceeded", message: "x", generation, failedAt: "2026-04-01T00:00:00Z" },
});

const input = (o: Partial<RoundsInput>): RoundsInput => ({
  run: RUN,
  spec: spec(),
  slices: [],
  rounds: [],
  previous: undefined,
  now: NOW,
  ...o,
});
// Bookkeeping writes (verdict.json) are checked on their own below.
const kinds = (d: ReturnType<typeof decideRounds>) =>
  d.actions.filter((a) => a.kind !== "RecordVerdict").map((a) => `${a.kind}:${a.round}`);

test("before the first complete discovery pass, nothing starts", () => {
  const d = decideRounds(input({ slices: undefined }));
  assert.deepEqual(kinds(d), []);
});

test("the first valid slice starts round 0 from spec.model.initialCheckpoint", () => {
  const d = decideRounds(input({ slices: [slice("2016")] }));
  assert.deepEqual(kinds(d), ["WritePlan:0", "CreateJob:0"]);
  const plan = (d.actions[0] as { plan: RoundPlan }).plan;
  assert.deepEqual(plan.newSlices, ["2016"]);
  assert.equal(plan.model.initCheckpoint, "s3://models/init.pt");
  assert.equal(plan.output.uri, "s3://runs/demo/rounds/0000/");
  assert.equal(d.current?.phase, "Pending");
});

test("a plan without a Job (crash between the two) gets its Job, and no second plan", () => {
  const r0: RoundObservation = { index: 0, files: new Set(["plan.json"]), plan: planFor(0, ["2016"], null) };
  const d = decideRounds(input({ slices: [slice("2016"), slice("2017")], rounds: [r0] }));
  assert.deepEqual(kinds(d), ["CreateJob:0"]);
});

test("suspend keeps a planned round from starting and starts no new one", () => {
  const r0: RoundObservation = { index: 0, files: new Set(["plan.json"]), plan: planFor(0, ["2016"], null) };
  assert.deepEqual(
    kinds(decideRounds(input({ spec: spec({ suspend: true }), slices: [slice("2016")], rounds: [r0] }))),
    [],
  );
  const d = decideRounds(input({ spec: spec({ suspend: true }), slices: [slice("2016")] }));
  assert.deepEqual(kinds(d), []);
  assert.equal(d.waiting?.reason, "Suspended");
});

test("while a round trains, new slices wait", () => {
  const d = decideRounds(input({ slices: [slice("2016"), slice("2017")], rounds: [running(0, ["2016"])] }));
  assert.deepEqual(kinds(d), []);
  assert.equal(d.current?.phase, "Training");
});

test("the next slice warm-starts from the previous round's checkpoint (EverySlice: one slice per round)", () => {
  const d = decideRounds(
    input({ slices: [slice("2016"), slice("2017"), slice("2018")], rounds: [trained(0, ["2016"])] }),
  );
  assert.deepEqual(kinds(d), ["WritePlan:1", "CreateJob:1"]);
  const plan = (d.actions[0] as { plan: RoundPlan }).plan;
  assert.deepEqual(plan.newSlices, ["2017"]);
  assert.equal(plan.model.initCheckpoint, "s3://runs/demo/rounds/0000/checkpoint.pt");
  assert.deepEqual(
    plan.data.sources.map((s) => s.sliceId),
    ["2016", "2017"],
    "CumulativeAll replays the past",
  );
});

test("roundPolicy Latest coalesces every waiting slice into one round", () => {
  const d = decideRounds(
    input({
      spec: spec({ strategy: { roundPolicy: "Latest" } }),
      slices: [slice("2016"), slice("2017"), slice("2018")],
      rounds: [trained(0, ["2016"])],
    }),
  );
  assert.deepEqual((d.actions[0] as { plan: RoundPlan }).plan.newSlices, ["2017", "2018"]);
});

test("a failed Job fails the round, records it once, and blocks until something changes", () => {
  const d = decideRounds(
    input({
      slices: [slice("2016"), slice("2017")],
      rounds: [trained(0, ["2016"]), failedJob(1, ["2017"], "s3://runs/demo/rounds/0000/checkpoint.pt")],
    }),
  );
  assert.deepEqual(kinds(d), ["RecordFailure:1"]);
  assert.equal(d.rounds[1]!.phase, "Failed");
  assert.match(d.rounds[1]!.message!, /OOMKilled/);
  assert.equal(d.waiting?.reason, "RoundFailed");
  assert.deepEqual(d.consumed, ["2016"], "a failed round consumes nothing");
});

test("a new slice retries the failed round's slice with the same init checkpoint", () => {
  const init = "s3://runs/demo/rounds/0000/checkpoint.pt";
  const d = decideRounds(
    input({
      slices: [slice("2016"), slice("2017"), slice("2018")],
      rounds: [trained(0, ["2016"]), failedRecorded(1, ["2017"], init)],
    }),
  );
  assert.deepEqual(kinds(d), ["WritePlan:2", "CreateJob:2"]);
  const plan = (d.actions[0] as { plan: RoundPlan }).plan;
  assert.deepEqual(plan.newSlices, ["2017"]);
  assert.equal(plan.model.initCheckpoint, init);
});

test("a spec change (new generation) also retries a failed round", () => {
  const d = decideRounds(
    input({ run: { ...RUN, generation: 2 }, slices: [slice("2016")], rounds: [failedRecorded(0, ["2016"], null, 1)] }),
  );
  assert.deepEqual(kinds(d), ["WritePlan:1", "CreateJob:1"]);
});

test("a Job that completed without _SUCCESS is a failed round", () => {
  const r0: RoundObservation = {
    ...running(0, ["2016"]),
    job: { name: "demo-r0000-train", active: 0, succeeded: 1, failed: 0, complete: true },
  };
  const d = decideRounds(input({ slices: [slice("2016")], rounds: [r0] }));
  assert.equal(d.rounds[0]!.reason, "MissingArtifacts");
});

test("Restart and Oracle start from the initial checkpoint like the others; Oracle's budget grows with trained rounds", () => {
  for (const replay of ["Restart", "Oracle"] as const) {
    const d = decideRounds(
      input({
        spec: spec({ strategy: { replay } }),
        slices: [slice("2016"), slice("2017")],
        rounds: [trained(0, ["2016"])],
      }),
    );
    const plan = (d.actions[0] as { plan: RoundPlan }).plan;
    assert.equal(plan.model.initCheckpoint, "s3://models/init.pt", replay);
    assert.equal(plan.data.samples, replay === "Oracle" ? 2000 : 1000);
  }
});

test("warmStartFrom LastPromoted uses the promoted checkpoint when there is one", () => {
  const d = decideRounds(
    input({
      spec: spec({ strategy: { warmStartFrom: "LastPromoted" } }),
      slices: [slice("2016"), slice("2017")],
      rounds: [trained(0, ["2016"])],
      promotedCheckpoint: "s3://models/v1/checkpoint.pt",
    }),
  );
  assert.equal((d.actions[0] as { plan: RoundPlan }).plan.model.initCheckpoint, "s3://models/v1/checkpoint.pt");
});

test("status history is bounded by historyLimit while compute counts every round", () => {
  const rounds = [0, 1, 2, 3].map((i) => trained(i, [String(2016 + i)]));
  const d = decideRounds(
    input({ spec: spec({ historyLimit: 2 }), slices: rounds.map((r) => slice(r.plan!.newSlices[0]!)), rounds }),
  );
  assert.deepEqual(
    d.rounds.map((r) => r.index),
    [2, 3],
  );
  assert.equal(d.compute.samplesSeen, 4000);
  assert.equal(d.compute.savingVsOracle, 2.5, "(T+1)/2 at T=4");
  assert.equal(d.rounds[0]!.gpuSeconds, 3600, "Job duration x GPUs");
});

test("a slice that completes after a later one was trained on is not planned", () => {
  const d = decideRounds(
    input({
      slices: [slice("2016"), slice("2017"), slice("2018")],
      rounds: [trained(0, ["2016"]), trained(1, ["2018"])],
    }),
  );
  assert.deepEqual(kinds(d), []);
  assert.deepEqual(d.late, ["2017"]);
});

test("a trained round without eval.json is evaluated before the next round starts", () => {
  const r0: RoundObservation = {
    ...trained(0, ["2016"]),
    evaluation: undefined,
    files: new Set(["plan.json", "_SUCCESS", "compute.json"]),
  };
  const inProcess = decideRounds(
    input({
      spec: spec({ evaluation: { runner: { mode: "InProcess" } } }),
      slices: [slice("2016"), slice("2017")],
      rounds: [r0],
    }),
  );
  assert.deepEqual(kinds(inProcess), ["EvaluateInProcess:0"]);
  assert.equal(inProcess.current?.phase, "Evaluating");
  const job = decideRounds(
    input({ slices: [slice("2016"), slice("2017")], rounds: [r0], evaluatorImage: "operator:1" }),
  );
  assert.deepEqual(kinds(job), ["CreateJob:0"]);
  const created = (job.actions[0] as { job: any }).job;
  assert.equal(created.metadata.name, "demo-r0000-eval");
  assert.equal(created.metadata.labels["ticclip.dev/component"], "evaluator");
  assert.deepEqual(created.spec.template.spec.containers[0].command.slice(0, 3), [
    "node",
    "operator/evaluation/cli.ts",
    "evaluate",
  ]);
});

test("a failed evaluation Job rejects the round and lets the next one start", () => {
  const r0: RoundObservation = {
    ...trained(0, ["2016"]),
    evaluation: undefined,
    evalJob: {
      name: "demo-r0000-eval",
      active: 0,
      succeeded: 0,
      failed: 3,
      complete: false,
      failure: { reason: "BackoffLimitExceeded", message: "evaluator exited 1" },
    },
  };
  const d = decideRounds(input({ slices: [slice("2016"), slice("2017")], rounds: [r0], evaluatorImage: "operator:1" }));
  assert.equal(d.rounds[0]!.phase, "Rejected");
  assert.equal(d.rounds[0]!.reason, "EvaluationFailed");
  // The failure is written as the round's eval.json, so it outlives the Job's TTL.
  assert.deepEqual(kinds(d), ["RecordEvaluationFailure:0", "WritePlan:1", "CreateJob:1"]);
  assert.deepEqual(
    d.events.map((e) => e.reason),
    ["RoundRejected"],
  );
});

const gated = (mode: "Auto" | "Manual") =>
  spec({
    evaluation: { gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0.3 }] },
    promotion: { mode, s3: { bucket: "models", prefix: "clip/" } },
  });

test("gates decide: a passing round is promoted (Auto), a failing one Rejected with its gate results", () => {
  const pass = decideRounds(
    input({ spec: gated("Auto"), slices: [slice("2016")], rounds: [trained(0, ["2016"], null, 0.5)] }),
  );
  assert.deepEqual(kinds(pass), ["Promote:0"]);
  assert.equal(pass.rounds[0]!.phase, "Gating");
  const fail = decideRounds(
    input({ spec: gated("Auto"), slices: [slice("2016")], rounds: [trained(0, ["2016"], null, 0.1)] }),
  );
  assert.deepEqual(kinds(fail), []);
  assert.equal(fail.rounds[0]!.phase, "Rejected");
  assert.equal(fail.rounds[0]!.gates![0]!.passed, false);
  assert.equal(fail.rounds[0]!.gates![0]!.observed, 0.1);
});

test("a promoted round shows its version; Manual waits for the approval annotation without blocking", () => {
  const promoted = decideRounds(
    input({ spec: gated("Auto"), slices: [slice("2016")], rounds: [{ ...trained(0, ["2016"]), promotedVersion: 1 }] }),
  );
  assert.equal(promoted.rounds[0]!.phase, "Promoted");
  assert.equal(promoted.rounds[0]!.promotedVersion, 1);
  const waiting = decideRounds(
    input({ spec: gated("Manual"), slices: [slice("2016"), slice("2017")], rounds: [trained(0, ["2016"])] }),
  );
  assert.equal(waiting.rounds[0]!.reason, "AwaitingApproval");
  assert.deepEqual(kinds(waiting), ["WritePlan:1", "CreateJob:1"], "an unapproved round does not hold the next one");
  const approved = decideRounds(
    input({
      spec: gated("Manual"),
      slices: [slice("2016")],
      rounds: [trained(0, ["2016"])],
      annotations: { "ticclip.dev/approve-round": "0" },
    }),
  );
  assert.deepEqual(kinds(approved), ["Promote:0"]);
});

test("a passing round older than the promoted one is not promoted (the alias never moves back)", () => {
  const d = decideRounds(
    input({
      spec: gated("Auto"),
      slices: [slice("2016"), slice("2017")],
      rounds: [trained(0, ["2016"]), { ...trained(1, ["2017"]), promotedVersion: 1 }],
    }),
  );
  assert.equal(d.rounds[0]!.phase, "Passed");
  assert.equal(d.rounds[0]!.reason, "Superseded");
  assert.deepEqual(kinds(d), []);
});

// Issue 10 item 2: a failing slice under EverySlice must not start a new round on every reconcile.
const THREE = [slice("2016"), slice("2017"), slice("2018")];
const recordOf = (d: ReturnType<typeof decideRounds>) =>
  (d.actions.find((a) => a.kind === "RecordFailure") as { record: { slicesKnown?: string[] } }).record;

test("a failed round records the slices it knew, and is not retried while nothing new arrived", () => {
  const d = decideRounds(input({ slices: THREE, rounds: [trained(0, ["2016"]), failedJob(1, ["2017"])] }));
  assert.deepEqual(kinds(d), ["RecordFailure:1"]);
  assert.deepEqual(recordOf(d).slicesKnown, ["2016", "2017", "2018"]);
  assert.equal(d.waiting?.reason, "RoundFailed");
  const recorded = {
    ...failedRecorded(1, ["2017"], null),
    failure: {
      reason: "BackoffLimitExceeded",
      message: "x",
      generation: 1,
      failedAt: "t",
      slicesKnown: ["2016", "2017", "2018"],
    },
  };
  const again = decideRounds(input({ slices: THREE, rounds: [trained(0, ["2016"]), recorded] }));
  assert.deepEqual(kinds(again), [], "2018 was there when 2017 failed: no retry");
});

test("a slice that arrives after the failure retries the failed slice once", () => {
  const recorded = {
    ...failedRecorded(1, ["2017"], null),
    failure: {
      reason: "BackoffLimitExceeded",
      message: "x",
      generation: 1,
      failedAt: "t",
      slicesKnown: ["2016", "2017", "2018"],
    },
  };
  const d = decideRounds(input({ slices: [...THREE, slice("2019")], rounds: [trained(0, ["2016"]), recorded] }));
  assert.deepEqual(kinds(d), ["WritePlan:2", "CreateJob:2"]);
  assert.deepEqual((d.actions[0] as { plan: RoundPlan }).plan.newSlices, ["2017"]);
});

test("after maxAttemptsPerSlice failed rounds the slice is given up with its reason and the next slice trains", () => {
  const known = { slicesKnown: ["2016", "2017", "2018"] };
  const failedWith = (i: number) => ({
    ...failedRecorded(i, ["2017"], null),
    failure: { reason: "BackoffLimitExceeded", message: "x", generation: 1, failedAt: "t", ...known },
  });
  const d = decideRounds(
    input({ slices: THREE, rounds: [trained(0, ["2016"]), failedWith(1), failedWith(2), failedJob(3, ["2017"])] }),
  );
  assert.deepEqual(kinds(d), ["RecordFailure:3", "WritePlan:4", "CreateJob:4"]);
  const record = d.actions[0] as { sliceFailed?: { reason: string; message: string } };
  assert.equal(record.sliceFailed?.reason, "SliceFailed");
  assert.match(record.sliceFailed?.message ?? "", /slice 2017: 3 rounds failed/);
  assert.deepEqual((d.actions[1] as { plan: RoundPlan }).plan.newSlices, ["2018"]);
  assert.deepEqual(
    d.failedSlices.map((f) => [f.id, f.attempts]),
    [["2017", 3]],
  );
  assert.deepEqual(d.late, [], "a slice given up on is not a late slice");
});

test("a rejected round older than historyLimit is not reported again on every reconcile", () => {
  const rejected = (i: number) => trained(i, [String(2016 + i)], null, 0.1);
  const s = spec({
    historyLimit: 2,
    evaluation: { gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0.3 }] },
  });
  const all = [rejected(0), rejected(1), rejected(2)];
  const first = decideRounds(input({ spec: s, slices: all.map((r) => slice(r.plan!.newSlices[0]!)), rounds: all }));
  assert.deepEqual(
    first.events.map((e) => e.reason),
    ["RoundRejected", "RoundRejected", "RoundRejected"],
  );
  const again = decideRounds(
    input({ spec: s, slices: all.map((r) => slice(r.plan!.newSlices[0]!)), rounds: all, previous: first.rounds }),
  );
  assert.deepEqual(again.events, []);
});

test("warmup only on rounds trained from scratch, unless warmStartWarmupSteps asks for it", () => {
  const optimizer = { warmupSteps: 500, warmStartWarmupSteps: 0 };
  const plan = (d: ReturnType<typeof decideRounds>) => (d.actions[0] as { plan: RoundPlan }).plan;
  const noInit = (o: Record<string, any>) =>
    ({ ...spec(o), model: { architecture: "ticclip-tiny" } }) as ContinualClipRunSpec;
  const first = decideRounds(input({ spec: noInit({ strategy: { optimizer } }), slices: [slice("2016")] }));
  assert.equal(plan(first).optimizer.warmupSteps, 500, "round 0 from scratch");
  const warm = decideRounds(
    input({
      spec: spec({ strategy: { optimizer } }),
      slices: [slice("2016"), slice("2017")],
      rounds: [trained(0, ["2016"])],
    }),
  );
  assert.equal(plan(warm).optimizer.warmupSteps, 0, "a warm-started round");
  const asked = decideRounds(
    input({
      spec: spec({ strategy: { optimizer: { ...optimizer, warmStartWarmupSteps: 50 } } }),
      slices: [slice("2016"), slice("2017")],
      rounds: [trained(0, ["2016"])],
    }),
  );
  assert.equal(plan(asked).optimizer.warmupSteps, 50);
  const restart = decideRounds(
    input({
      spec: noInit({ strategy: { replay: "Restart", optimizer } }),
      slices: [slice("2016"), slice("2017")],
      rounds: [trained(0, ["2016"])],
    }),
  );
  assert.equal(plan(restart).optimizer.warmupSteps, 500, "Restart trains from scratch");
  assert.equal(roundPlan.safeParse(plan(warm)).success, true, "the plan is what the trainer contract accepts");
});

// Issue 10 item 7: what compute needs outlives the Job.
test("a finished Job's GPU-seconds are recorded beside the round once, and used after the Job is gone", () => {
  const r0 = { ...trained(0, ["2016"]), files: new Set(["plan.json", "_SUCCESS", "checkpoint.pt", "eval.json"]) };
  const d = decideRounds(input({ slices: [slice("2016")], rounds: [r0] }));
  const record = d.actions.find((a) => a.kind === "RecordCompute") as { record: { gpuSeconds: number } } | undefined;
  assert.equal(record?.record.gpuSeconds, 3600, "one hour on one GPU");
  const gone = {
    ...trained(0, ["2016"]),
    job: undefined,
    compute: { gpuSeconds: 3600, startedAt: "2026-04-01T00:00:00Z", finishedAt: "2026-04-01T01:00:00Z" },
  };
  const later = decideRounds(input({ slices: [slice("2016")], rounds: [gone], previous: [] }));
  assert.equal(later.rounds[0]!.gpuSeconds, 3600);
  assert.equal(later.compute.gpuSeconds, 3600, "totals do not shrink when the Job and the status entry are gone");
  assert.deepEqual(kinds(later), []);
});

// Issue 10 item 8: a verdict is recorded once, with the gates it was judged by.
test("a round is judged once: its verdict is recorded, and later gate changes neither reject nor promote it", () => {
  const gate = (value: number) =>
    spec({
      evaluation: { gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value }] },
      promotion: { mode: "Auto", s3: { bucket: "models", prefix: "clip/" } },
    });
  const first = decideRounds(
    input({ spec: gate(0.3), slices: [slice("2016")], rounds: [trained(0, ["2016"], null, 0.5)] }),
  );
  const record = first.actions.find((a) => a.kind === "RecordVerdict") as
    | { record: import("../../../operator/controller/types.ts").VerdictRecord }
    | undefined;
  assert.equal(record?.record.verdict.passed, true);
  assert.deepEqual(
    record?.record.gates.map((g) => g.value),
    [0.3],
  );
  const judged = { ...trained(0, ["2016"], null, 0.5), verdict: record!.record, promotedVersion: 1 };
  const tightened = decideRounds(input({ spec: gate(0.9), slices: [slice("2016")], rounds: [judged] }));
  assert.equal(tightened.rounds[0]!.phase, "Promoted", "the serving round stays Promoted");
  const rejected = { ...trained(0, ["2016"], null, 0.1) };
  const r0 = decideRounds(input({ spec: gate(0.3), slices: [slice("2016")], rounds: [rejected] }));
  const rejectedRecord = (
    r0.actions.find((a) => a.kind === "RecordVerdict") as {
      record: import("../../../operator/controller/types.ts").VerdictRecord;
    }
  ).record;
  const loosened = decideRounds(
    input({ spec: gate(0.05), slices: [slice("2016")], rounds: [{ ...rejected, verdict: rejectedRecord }] }),
  );
  assert.equal(loosened.rounds[0]!.phase, "Rejected");
  assert.deepEqual(kinds(loosened), [], "no promotion of an old rejected round");
});

test("only the newest passing round is promoted", () => {
  const s = spec({
    evaluation: { gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0.3 }] },
    promotion: { mode: "Auto", s3: { bucket: "models", prefix: "clip/" } },
  });
  const passed = (i: number) => {
    const r = trained(i, [String(2016 + i)], null, 0.5);
    const v = decideRounds(input({ spec: s, slices: [slice(String(2016 + i))], rounds: [r] })).actions.find(
      (a) => a.kind === "RecordVerdict",
    ) as { record: import("../../../operator/controller/types.ts").VerdictRecord };
    return { ...r, verdict: { ...v.record } };
  };
  const d = decideRounds(input({ spec: s, slices: [slice("2016"), slice("2017")], rounds: [passed(0), passed(1)] }));
  assert.deepEqual(kinds(d), ["Promote:1"]);
  assert.equal(d.rounds[0]!.reason, "Superseded");
});

// Issue 21, check: under Latest, good slices batched with a bad one do not spend their attempts with it.
test("roundPolicy Latest retries a failed batch one slice at a time, so a bad slice is given up alone", () => {
  const latest = spec({ strategy: { roundPolicy: "Latest", maxAttemptsPerSlice: 2 } });
  const all = [slice("2016"), slice("2017"), slice("2018"), slice("2019")];
  // Round 1 coalesced 2017-2019 and failed (2018 is bad); a new slice arrived since.
  const failedBatch = failedRecorded(1, ["2017", "2018", "2019"], "s3://runs/demo/rounds/0000/checkpoint.pt");
  failedBatch.failure!.slicesKnown = ["2016", "2017", "2018", "2019"];
  const withNew = [...all, slice("2020")];
  let d = decideRounds(input({ spec: latest, slices: withNew, rounds: [trained(0, ["2016"]), failedBatch] }));
  assert.deepEqual((d.actions[0] as { plan: RoundPlan }).plan.newSlices, ["2017"], "the oldest alone");
  // 2017 trains; 2018 alone next, not batched with 2019 and 2020.
  d = decideRounds(
    input({ spec: latest, slices: withNew, rounds: [trained(0, ["2016"]), failedBatch, trained(2, ["2017"])] }),
  );
  assert.deepEqual((d.actions[0] as { plan: RoundPlan }).plan.newSlices, ["2018"]);
  // 2018 fails alone: its first attempt (the batch blamed none of its slices, which cannot say
  // which one failed it). Retried alone once a slice arrives, it fails again and is given up.
  const bad = failedRecorded(3, ["2018"], "s3://runs/demo/rounds/0002/checkpoint.pt");
  bad.failure!.slicesKnown = withNew.map((s) => s.id);
  const history = [trained(0, ["2016"]), failedBatch, trained(2, ["2017"]), bad];
  d = decideRounds(input({ spec: latest, slices: withNew, rounds: history }));
  assert.deepEqual(d.failedSlices, []);
  const newer = [...withNew, slice("2021")];
  const again = failedRecorded(4, ["2018"], "s3://runs/demo/rounds/0002/checkpoint.pt");
  again.failure!.slicesKnown = newer.map((s) => s.id);
  d = decideRounds(input({ spec: latest, slices: newer, rounds: [...history, again] }));
  assert.deepEqual(
    d.failedSlices.map((f) => [f.id, f.attempts]),
    [["2018", 2]],
    "only the bad slice is given up",
  );
  assert.deepEqual((d.actions.find((a) => a.kind === "WritePlan") as { plan: RoundPlan }).plan.newSlices, ["2019"]);
});
