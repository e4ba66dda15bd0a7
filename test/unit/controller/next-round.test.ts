// Table tests of the sub-decider next-round.ts: which slices the next round trains on, from which checkpoint, and the retry policy
// (through decideRounds: observed world in, actions and round status out).
import { test } from "node:test";
import assert from "node:assert/strict";
import type { ContinualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { roundPlan, type RoundPlan } from "../../../operator/api/round-plan.ts";
import { decideRounds, type RoundObservation } from "../../../operator/controller/rounds.ts";
import {
  RUN,
  spec,
  slice,
  planFor,
  trained,
  running,
  failedJob,
  failedRecorded,
  input,
  kinds,
  THREE,
  recordOf,
} from "./rounds-fixtures.ts";

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
