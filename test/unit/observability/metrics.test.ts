// Per-run gauges follow status: a series whose phase, reason or metric went away disappears.
import { test } from "node:test";
import assert from "node:assert/strict";
import { forgetAllRuns, forgetRun, observeRunStatus, registry } from "../../../operator/observability/metrics.ts";

async function series(name: string): Promise<string[]> {
  const text = await registry.metrics();
  return text.split("\n").filter((l) => l.startsWith(`${name}{`) && l.includes('run="m"'));
}

test("a round that moves on leaves no series of its old phase behind", async () => {
  observeRunStatus("ns", "m", { rounds: [{ index: 0, phase: "Training" }] });
  observeRunStatus("ns", "m", { rounds: [{ index: 0, phase: "Promoted" }] });
  assert.deepEqual(await series("ticclip_rounds"), ['ticclip_rounds{namespace="ns",run="m",phase="Promoted"} 1']);
  forgetRun("ns", "m");
});

test("conditions are one series each, labelled by their current reason", async () => {
  const cond = (type: string, status: string, reason: string) => ({ type, status, reason });
  observeRunStatus("ns", "m", {
    conditions: [cond("Ready", "False", "S3Network"), cond("Stalled", "True", "S3Network")],
  });
  observeRunStatus("ns", "m", {
    conditions: [cond("Ready", "True", "WaitingForData"), cond("Stalled", "False", "AsExpected")],
  });
  assert.deepEqual((await series("ticclip_run_condition")).sort(), [
    'ticclip_run_condition{namespace="ns",run="m",condition="Ready",reason="WaitingForData"} 1',
    'ticclip_run_condition{namespace="ns",run="m",condition="Stalled",reason="AsExpected"} 0',
  ]);
  forgetRun("ns", "m");
  assert.deepEqual(await series("ticclip_run_condition"), []);
});

test("the latest evaluated round's metrics and the rejections since the last promotion are exported", async () => {
  observeRunStatus("ns", "m", {
    promoted: { version: 1, round: 0 },
    rounds: [
      { index: 0, phase: "Promoted", metrics: { "retrieval.id.meanRecallAt1": 0.5 } },
      { index: 1, phase: "Rejected", metrics: { "retrieval.id.meanRecallAt1": 0.2 } },
      { index: 2, phase: "Rejected", metrics: { "retrieval.id.meanRecallAt1": 0.1 } },
      { index: 3, phase: "Training" },
    ],
  });
  assert.deepEqual(await series("ticclip_latest_round_metric"), [
    'ticclip_latest_round_metric{namespace="ns",run="m",metric="retrieval.id.meanRecallAt1"} 0.1',
  ]);
  assert.deepEqual(await series("ticclip_latest_evaluated_round"), [
    'ticclip_latest_evaluated_round{namespace="ns",run="m"} 2',
  ]);
  assert.deepEqual(await series("ticclip_rounds_rejected_since_promotion"), [
    'ticclip_rounds_rejected_since_promotion{namespace="ns",run="m"} 2',
  ]);
  forgetRun("ns", "m");
});

test("a replica that stops reconciling drops every per-run series", async () => {
  observeRunStatus("ns", "m", {
    rounds: [{ index: 0, phase: "Training" }],
    conditions: [{ type: "Ready", status: "True", reason: "RoundTraining" }],
  });
  forgetAllRuns();
  assert.deepEqual([...(await series("ticclip_rounds")), ...(await series("ticclip_run_condition"))], []);
});
