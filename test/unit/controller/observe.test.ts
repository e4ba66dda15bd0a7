// observe.ts against an in-memory S3: what the reconciler remembers of round documents.
import { test } from "node:test";
import assert from "node:assert/strict";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { memoryFor } from "../../../operator/controller/memory.ts";
import { observeProgress, observeRounds } from "../../../operator/controller/observe.ts";
import type { RawObject } from "../../../operator/kube/client.ts";
import { roundFiles } from "../../support/rounds.ts";
import { memoryStorage, quietLog } from "./fakes.ts";

const spec = continualClipRunSpec.parse({
  source: { s3: { bucket: "data", prefix: "slices/" } },
  model: { architecture: "ticclip-tiny" },
  strategy: { samplesPerRound: 20 },
  trainer: { image: "trainer:1", gpusPerNode: 0 },
  artifacts: { s3: { bucket: "runs", prefix: "demo/" } },
});
const run: RawObject = { metadata: { name: "demo", namespace: "ns", uid: "uid-1", generation: 1 }, spec };

test("a judged eval.json is remembered by its time only, and whole again once its verdict.json is gone", async () => {
  const s3 = memoryStorage();
  for (const [key, body] of roundFiles("runs", "demo/", 0, { recall: 0.5 }))
    await s3.objects.put(`s3://runs/${key}`, body);
  const mem = memoryFor(undefined, spec, { region: "us-east-1", addressingStyle: "VirtualHost" }, () => s3.storage);
  const jobs = { trainer: new Map(), evaluator: new Map() };
  const evaluation = async () => (await observeRounds(run, spec, mem, jobs, quietLog)).rounds[0]!.evaluation!;

  const whole = await evaluation();
  assert.ok("candidate" in whole, "not judged yet: decisions need all of it");
  const verdict = "s3://runs/demo/rounds/0000/verdict.json";
  const verdictOf = { passed: true, metrics: {}, gates: [], message: "ok" };
  const record = { evaluatedAt: whole.evaluatedAt, judgedAt: "t", gates: [], verdict: verdictOf };
  await s3.objects.put(verdict, JSON.stringify(record));
  assert.deepEqual(await evaluation(), { judged: true, evaluatedAt: whole.evaluatedAt });
  s3.objects.objects.delete(verdict);
  assert.ok("candidate" in (await evaluation()), "without its verdict it must be judged again, from all of it");
});

test("progress.json is read only for a training round, at most once per interval, and again only when it changed", async () => {
  const s3 = memoryStorage();
  const plan = [...roundFiles("runs", "demo/", 0)].find(([key]) => key.endsWith("plan.json"))!;
  await s3.objects.put(`s3://runs/${plan[0]}`, plan[1]);
  const uri = "s3://runs/demo/rounds/0000/progress.json";
  let reads = 0;
  const get = s3.objects.get.bind(s3.objects);
  s3.objects.get = async (u, limit) => {
    if (u === uri) reads++;
    return get(u, limit);
  };
  const report = (samplesDone: number) =>
    JSON.stringify({
      schemaVersion: 1,
      phase: "training",
      samplesDone,
      samplesTotal: 16,
      steps: 1,
      stepsTotal: 2,
      samplesPerSecond: 4,
      dataWaitShare: 0,
      loss: 2,
      lr: 0.001,
      peakMemoryBytes: null,
      skippedSamples: { total: 0, byReason: {} },
      updatedAt: "2026-03-01T12:00:00Z",
    });
  const mem = memoryFor(undefined, spec, { region: "us-east-1", addressingStyle: "VirtualHost" }, () => s3.storage);
  const idle = { trainer: new Map(), evaluator: new Map() };
  const training = { trainer: new Map([[0, { name: "demo-r0000-train" } as never]]), evaluator: new Map() };
  const pass = async (jobs: typeof idle, now: number) => {
    const observed = await observeRounds(run, spec, mem, jobs, quietLog);
    return observeProgress(spec, mem, observed.rounds, 30_000, now, quietLog);
  };

  await s3.objects.put(uri, report(8));
  assert.equal(await pass(idle, 0), undefined, "no Job: the round is not training");
  assert.equal(reads, 0, "no reads for a run with no round in training");
  assert.equal((await pass(training, 0))?.value?.samplesDone, 8);
  await s3.objects.put(uri, report(12));
  assert.equal((await pass(training, 10_000))?.value?.samplesDone, 8, "within the interval: what memory holds");
  assert.equal(reads, 1);
  assert.equal((await pass(training, 30_000))?.value?.samplesDone, 12);
  assert.equal((await pass(training, 60_000))?.value?.samplesDone, 12, "unchanged ETag: not read again");
  assert.equal(reads, 2);
  await s3.objects.put(uri, "{not json");
  const bad = await pass(training, 90_000);
  assert.equal(bad?.value?.samplesDone, 12, "an unusable report keeps the last good one");
  assert.match(bad?.problem ?? "", /progress\.json: not JSON/);
});
