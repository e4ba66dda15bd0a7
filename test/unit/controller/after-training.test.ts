// Table tests of the sub-decider after-training.ts: a trained round's evaluation, gates and promotion
// (through decideRounds: observed world in, actions and round status out).
import { test } from "node:test";
import assert from "node:assert/strict";
import { decideRounds, type RoundObservation } from "../../../operator/controller/rounds.ts";
import { spec, slice, trained, input, kinds, gated } from "./rounds-fixtures.ts";

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
