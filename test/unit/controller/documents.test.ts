// Documents a run reads from S3 are input (issue 21, items 7 and 10): each is parsed with its schema
// and read within its size limit, and one that cannot be used is a condition naming its key, for
// that run only, instead of an exception that retries forever with no status.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { DOCUMENT_LIMITS } from "../../../operator/s3/documents.ts";
import { ObjectTooLarge, S3Failure, classifyS3Error } from "../../../operator/s3/errors.ts";
import { RoundStore } from "../../../operator/s3/round-store.ts";
import type { SeedOptions } from "../../support/rounds.ts";
import { putSlice } from "../data/memory-store.ts";
import { fakeWorld, memoryStorage } from "./fakes.ts";

function world(spec: Record<string, unknown> = {}, seed: SeedOptions = { recall: 0.5 }) {
  const w = fakeWorld({ spec });
  const put = (uri: string, body: string) => w.s3.objects.put(uri, body);
  w.seed(0, seed);
  putSlice(w.s3.slices, "slices/", "2016");
  return {
    s3: w.s3,
    put,
    condition: w.condition,
    status: () => w.status() as Record<string, unknown> | undefined,
    reconcile: w.reconcile,
  };
}

const verdict = {
  evaluatedAt: "2026-01-01T00:00:00Z",
  judgedAt: "2026-01-01T00:00:01Z",
  gates: [],
  verdict: { passed: true, metrics: {}, gates: [], message: "ok" },
};
const alias = "s3://models/clip/production.json";
const promotion = { promotion: { s3: { bucket: "models", prefix: "clip/" } } };

describe("documents read from S3", () => {
  type Case = { name: string; uri: string; body: string; spec?: Record<string, unknown>; seed?: SeedOptions };
  const cases: (Case & { says: RegExp })[] = [
    {
      name: "failed.json whose reason is a number",
      uri: "s3://runs/demo/rounds/0000/failed.json",
      body: JSON.stringify({ reason: 5, message: "m", generation: 1, failedAt: "t" }),
      seed: { trained: false },
      says: /reason: Invalid input: expected string, received number/,
    },
    {
      name: "verdict.json without its verdict",
      uri: "s3://runs/demo/rounds/0000/verdict.json",
      body: JSON.stringify({ ...verdict, verdict: undefined }),
      says: /verdict: /,
    },
    {
      name: "compute.json with negative GPU-seconds",
      uri: "s3://runs/demo/rounds/0000/compute.json",
      body: JSON.stringify({ gpuSeconds: -1 }),
      says: /gpuSeconds: /,
    },
    {
      name: "train_summary.json with a negative skip count",
      uri: "s3://runs/demo/rounds/0000/train_summary.json",
      body: JSON.stringify({ samplesSeen: 20, skippedSamples: { total: -1, limit: 0, byReason: {} } }),
      says: /skippedSamples\.total: /,
    },
    {
      name: "eval.json that is not JSON",
      uri: "s3://runs/demo/rounds/0000/eval.json",
      body: "{",
      says: /not JSON/,
    },
    {
      name: "eval.json larger than an eval.json may be",
      uri: "s3://runs/demo/rounds/0000/eval.json",
      body: " ".repeat(DOCUMENT_LIMITS.eval + 1),
      says: /16777217 bytes: more than the 16777216 bytes/,
    },
    {
      name: "an alias pointer of another shape",
      uri: alias,
      body: JSON.stringify({ version: "latest" }),
      spec: promotion,
      says: /version: /,
    },
    {
      name: "a version.json naming another version",
      uri: "s3://models/clip/v1/version.json",
      body: JSON.stringify({
        schemaVersion: 1,
        version: 2,
        round: 0,
        run: { namespace: "ns", name: "demo", uid: "uid-1" },
        sourceUri: "s3://runs/demo/rounds/0000/",
        files: [],
        metrics: {},
        createdAt: "t",
      }),
      spec: promotion,
      says: /names version 2, not 1/,
    },
  ];
  for (const c of cases) {
    test(`${c.name} is a condition naming its key, and the run acts on nothing`, async () => {
      const w = world(c.spec, c.seed);
      await w.put(c.uri, c.body);
      const before = [...w.s3.objects.objects.keys()];
      const outcome = await w.reconcile();
      assert.notEqual(outcome.kind, "retry", "an answer, not an exception retried with no status");
      const ready = w.condition("Ready");
      assert.equal(ready?.status, "False");
      assert.equal(ready?.reason, "InvalidDocument");
      assert.ok(ready.message.includes(c.uri), ready.message);
      assert.match(ready.message, c.says);
      assert.equal(w.condition("Stalled")?.status, "True");
      const written = [...w.s3.objects.objects.keys()].filter((k) => !before.includes(k));
      assert.deepEqual(written, [], "no plan, verdict or promotion written on a bad document");
    });
  }

  test("a plan.json over its limit holds the rounds after it, named in the condition", async () => {
    const w = world();
    await w.put("s3://runs/demo/rounds/0000/plan.json", " ".repeat(DOCUMENT_LIMITS.plan + 1));
    await w.reconcile();
    const ready = w.condition("Ready");
    assert.equal(ready?.reason, "RoundPlanUnreadable");
    assert.match(ready!.message, /rounds\/0000\/plan\.json cannot be used \(16777217 bytes: more than the 16777216/);
  });

  test("one document that cannot be read in time is a condition naming its key, not a silent retry", async () => {
    const w = world();
    const key = "s3://runs/demo/rounds/0000/eval.json";
    const get = w.s3.objects.get.bind(w.s3.objects);
    w.s3.objects.get = async (uri, limit) => {
      if (uri !== key) return get(uri, limit);
      const cause = Object.assign(new Error("no answer in 30000 ms"), { name: "TimeoutError" });
      throw new S3Failure(classifyS3Error(cause, `get ${uri}`), { cause });
    };
    const outcome = await w.reconcile();
    assert.notEqual(outcome.kind, "retry");
    const ready = w.condition("Ready");
    assert.equal(ready?.reason, "S3Timeout");
    assert.ok(ready.message.includes(key), ready.message);
  });

  test("the operator never writes a round document a reader would refuse", async () => {
    const { objects } = memoryStorage();
    const store = new RoundStore(objects, { bucket: "runs", prefix: "demo/" });
    const huge = { newSlices: ["x".repeat(DOCUMENT_LIMITS.plan)] };
    await assert.rejects(store.putJsonIfAbsent(0, "plan.json", huge), ObjectTooLarge);
    assert.equal(objects.objects.size, 0);
  });
});

describe("skipped samples in status", () => {
  const summaryUri = "s3://runs/demo/rounds/0000/train_summary.json";
  const skipped = { total: 3, limit: 5, byReason: { imageTruncated: 2, noCaption: 1 } };

  test("a trained round's status entry shows train_summary.json's skip counts, read once", async () => {
    const w = world();
    // What the trainer writes: more than status shows (examples, shards), all in one document.
    const trainer = { ...skipped, examples: { noCaption: "s3://data/x.tar#000001" }, shards: [], shardsWithSkips: 1 };
    await w.put(summaryUri, JSON.stringify({ samplesSeen: 20, lossCurve: [], skippedSamples: trainer }));
    let gets = 0;
    const get = w.s3.objects.get.bind(w.s3.objects);
    w.s3.objects.get = async (uri, limit) => {
      if (uri === summaryUri) gets++;
      return get(uri, limit);
    };
    await w.reconcile();
    const round = () => (w.status()!.rounds as { skippedSamples?: unknown }[])[0];
    assert.deepEqual(round()?.skippedSamples, skipped);
    await w.reconcile();
    assert.deepEqual(round()?.skippedSamples, skipped);
    assert.equal(gets, 1, "remembered by its ETag after the first read");
  });

  test("a summary written before skips were counted shows none", async () => {
    const w = world();
    await w.put(summaryUri, JSON.stringify({ samplesSeen: 20 }));
    await w.reconcile();
    const rounds = w.status()!.rounds as Record<string, unknown>[];
    assert.ok(rounds[0]?.checkpoint, "the round trained");
    assert.equal("skippedSamples" in rounds[0], false);
    assert.notEqual(w.condition("Ready")?.reason, "InvalidDocument");
  });
});
