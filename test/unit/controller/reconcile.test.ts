// The Reconciler against fakes of its ports: observe -> decide -> act without a cluster or S3.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Reconciler } from "../../../operator/controller/reconcile.ts";
import type { RawObject } from "../../../operator/kube/client.ts";
import { putSlice } from "../data/memory-store.ts";
import { FakeChildren, FakeEvents, FakeRuns, memoryStorage, quietLog } from "./fakes.ts";

const NOW = new Date("2026-05-01T00:00:00Z");

function setup(spec: Record<string, unknown> = {}) {
  const runs = new FakeRuns();
  const children = new FakeChildren();
  const events = new FakeEvents();
  const s3 = memoryStorage();
  const run: RawObject = {
    metadata: { name: "demo", namespace: "ns", uid: "uid-1", generation: 1 },
    spec: {
      source: { s3: { bucket: "data", prefix: "slices/" } },
      model: { architecture: "ticclip-tiny" },
      strategy: { samplesPerRound: 20 },
      trainer: { image: "trainer:1", gpusPerNode: 0 },
      artifacts: { s3: { bucket: "runs", prefix: "demo/" } },
      ...spec,
    },
  };
  runs.add(run);
  const reconciler = new Reconciler({ runs, children, events, log: quietLog, now: () => NOW, storage: () => s3.storage });
  return { runs, children, events, s3, reconciler, reconcile: () => reconciler.reconcile("ns/demo") };
}

const json = (s: ReturnType<typeof memoryStorage>, uri: string) => {
  const raw = s.objects.objects.get(uri);
  return raw && JSON.parse(new TextDecoder().decode(raw));
};

test("a new slice becomes a written plan, a created Job, an event and status Training", async () => {
  const w = setup();
  putSlice(w.s3.slices, "slices/", "2016");
  const outcome = await w.reconcile();
  assert.equal(outcome.kind, "requeueAfter");
  const plan = json(w.s3, "s3://runs/demo/rounds/0000/plan.json");
  assert.deepEqual(plan.newSlices, ["2016"]);
  assert.ok(w.children.objects.has("Job/demo-r0000-train"));
  assert.deepEqual(w.events.list.map((e) => e.reason), ["RoundStarted", "RoundStarting"]);
  const status = w.runs.runs.get("ns/demo")!.status as { phase: string; currentRound: { index: number } };
  assert.equal(status.phase, "Training");
  assert.equal(status.currentRound.index, 0);
});

test("reconciling again without change writes nothing and creates nothing", async () => {
  const w = setup();
  putSlice(w.s3.slices, "slices/", "2016");
  await w.reconcile();
  const patches = w.runs.patches;
  const objects = w.s3.objects.objects.size;
  await w.reconcile();
  assert.equal(w.runs.patches, patches);
  assert.equal(w.s3.objects.objects.size, objects);
  assert.equal(w.children.objects.size, 1);
});

test("a missing credentials Secret is Degraded with the reason, and nothing is created", async () => {
  const w = setup({ source: { s3: { bucket: "data", prefix: "slices/", credentialsSecretRef: { name: "creds" } } } });
  putSlice(w.s3.slices, "slices/", "2016");
  await w.reconcile();
  const status = w.runs.runs.get("ns/demo")!.status as { phase: string; conditions: { type: string; status: string; reason: string }[] };
  assert.equal(status.phase, "Degraded");
  assert.deepEqual(status.conditions.find((c) => c.type === "Degraded")?.reason, "SecretMissing");
  assert.equal(w.children.objects.size, 0);
  assert.equal(w.s3.objects.objects.size, 0);
});
