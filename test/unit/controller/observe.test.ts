// observe.ts against an in-memory S3: what the reconciler remembers of round documents.
import { test } from "node:test";
import assert from "node:assert/strict";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { memoryFor } from "../../../operator/controller/memory.ts";
import { observeRounds } from "../../../operator/controller/observe.ts";
import type { RawObject } from "../../../operator/kube/client.ts";
import { roundFiles } from "../../support/rounds.ts";
import { memoryStorage, quietLog } from "./fakes.ts";

test("a judged eval.json is remembered by its time only, and whole again once its verdict.json is gone", async () => {
  const s3 = memoryStorage();
  const spec = continualClipRunSpec.parse({
    source: { s3: { bucket: "data", prefix: "slices/" } },
    model: { architecture: "ticclip-tiny" },
    strategy: { samplesPerRound: 20 },
    trainer: { image: "trainer:1", gpusPerNode: 0 },
    artifacts: { s3: { bucket: "runs", prefix: "demo/" } },
  });
  const run: RawObject = { metadata: { name: "demo", namespace: "ns", uid: "uid-1", generation: 1 }, spec };
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
