// Table tests of the sub-decider round-status.ts: each observed round's phase, failure record, GPU-seconds and the bounded history
// (through decideRounds: observed world in, actions and round status out).
import { test } from "node:test";
import assert from "node:assert/strict";
import { decideRounds, type RoundObservation } from "../../../operator/controller/rounds.ts";
import { spec, slice, trained, running, failedJob, input, kinds } from "./rounds-fixtures.ts";

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

test("a Job that completed without _SUCCESS is a failed round", () => {
  const r0: RoundObservation = {
    ...running(0, ["2016"]),
    job: { name: "demo-r0000-train", active: 0, succeeded: 1, failed: 0, complete: true },
  };
  const d = decideRounds(input({ slices: [slice("2016")], rounds: [r0] }));
  assert.equal(d.rounds[0]!.reason, "MissingArtifacts");
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
