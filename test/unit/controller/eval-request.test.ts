// Issue 21 item 12: an evaluation Job gets its request through the round folder, not its argv, so
// a run with thousands of slices can still be evaluated (one argument over 128 KiB, the kernel's
// MAX_ARG_STRLEN, failed every evaluation).
import { test } from "node:test";
import assert from "node:assert/strict";
import { evalRequest } from "../../../operator/api/eval-request.ts";
import { Reconciler } from "../../../operator/controller/reconcile.ts";
import { roundFiles } from "../../support/rounds.ts";
import { putSlice } from "../data/memory-store.ts";
import { demoRun, FakeChildren, FakeEvents, FakeRuns, memoryStorage, quietLog } from "./fakes.ts";

test("a trained round's evaluation Job reads every known slice from eval-request.json; its argv stays small", async () => {
  const runs = new FakeRuns();
  const children = new FakeChildren();
  const s3 = memoryStorage();
  runs.add(demoRun({ strategy: { samplesPerRound: 20, roundPolicy: "Latest" } }));
  // 4,000 slices of 40-character ids: 164 KB as one comma-separated argument.
  const ids = Array.from({ length: 4000 }, (_, i) => `2024-${String(i).padStart(5, "0")}-eu-west-1-hourly-crawl-ab`);
  for (const id of ids) putSlice(s3.slices, "slices/", id, { shards: [1] });
  for (const [key, body] of roundFiles("runs", "demo/", 0, { slices: ids }))
    await s3.objects.put(`s3://runs/${key}`, body);
  const reconciler = new Reconciler({
    runs,
    children,
    events: new FakeEvents(),
    log: quietLog,
    storage: () => s3.storage,
    // The run names no Secret: the operator's own identity (here: in-memory S3) is allowed.
    allowDefaultCredentials: true,
    evaluatorImage: "operator:1",
  });
  await reconciler.reconcile("ns/demo");
  const job = children.objects.get("Job/demo-r0000-eval");
  assert.ok(job, "the evaluation Job was created");
  const command: string[] = job.spec.template.spec.containers[0].command;
  const uri = "s3://runs/demo/rounds/0000/eval-request.json";
  assert.deepEqual(command.slice(2), ["evaluate", "--request", uri]);
  assert.ok(
    command.every((a) => Buffer.byteLength(a) < 128 * 1024),
    "every argument within MAX_ARG_STRLEN",
  );
  const request = evalRequest.parse(JSON.parse(new TextDecoder().decode(s3.objects.objects.get(uri))));
  assert.equal(request.round, 0);
  assert.equal(request.roundUri, "s3://runs/demo/rounds/0000/");
  assert.deepEqual(request.run, { namespace: "ns", name: "demo", uid: "uid-1" });
  assert.deepEqual(request.slices, ids);
});
