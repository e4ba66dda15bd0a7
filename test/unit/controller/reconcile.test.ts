// The Reconciler against fakes of its ports: observe -> decide -> act without a cluster or S3.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { EvalResult } from "../../../operator/api/eval-result.ts";
import type { Evaluate } from "../../../operator/controller/ports.ts";
import { roundFiles } from "../../support/rounds.ts";
import { classifyS3Error, S3Failure } from "../../../operator/s3/errors.ts";
import { putSlice } from "../data/memory-store.ts";
import { fakeWorld, type memoryStorage } from "./fakes.ts";

function setup(spec: Record<string, unknown> = {}, evaluate?: Evaluate) {
  return fakeWorld({ spec, deps: evaluate ? { evaluate } : {} });
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
  assert.deepEqual(
    w.events.list.map((e) => e.reason),
    ["RoundStarted", "RoundStarting"],
  );
  const status = w.runs.runs.get("ns/demo")!.status as { phase: string; currentRound: { index: number } };
  assert.equal(status.phase, "Training");
  assert.equal(status.currentRound.index, 0);
});

test("reconciling again without change writes nothing and creates nothing", async () => {
  const w = setup();
  putSlice(w.s3.slices, "slices/", "2016");
  await w.reconcile();
  const patches = w.runs.patches;
  // The document cache is memory, written once the plan was read back; everything else is the world.
  const world = () => [...w.s3.objects.objects.keys()].filter((k) => !k.endsWith("/operator-cache.json"));
  const objects = world();
  await w.reconcile();
  assert.equal(w.runs.patches, patches);
  assert.deepEqual(world(), objects);
  assert.equal(w.children.objects.size, 1);
});

test("a missing credentials Secret is Degraded with the reason, and nothing is created", async () => {
  const w = setup({ source: { s3: { bucket: "data", prefix: "slices/", credentialsSecretRef: { name: "creds" } } } });
  putSlice(w.s3.slices, "slices/", "2016");
  await w.reconcile();
  const status = w.runs.runs.get("ns/demo")!.status as {
    phase: string;
    conditions: { type: string; status: string; reason: string }[];
  };
  assert.equal(status.phase, "Degraded");
  assert.deepEqual(status.conditions.find((c) => c.type === "Degraded")?.reason, "SecretMissing");
  assert.equal(w.children.objects.size, 0);
  assert.equal(w.s3.objects.objects.size, 0);
});

// Issue 10 item 1: what the Reconciler remembers is keyed to what it describes.
function seed(
  w: ReturnType<typeof setup>,
  bucket: string,
  prefix: string,
  index: number,
  o: Parameters<typeof roundFiles>[3],
) {
  for (const [key, body] of roundFiles(bucket, prefix, index, o)) void w.s3.objects.put(`s3://${bucket}/${key}`, body);
}

/** An evaluator that records what it was asked to score and fails the round (no model). */
function countingEvaluator() {
  const rounds: number[] = [];
  const evaluate: Evaluate = async (_objects, request) => {
    rounds.push(request.round);
    const failed: EvalResult = {
      schemaVersion: 1,
      status: "Failed",
      round: request.round,
      roundUri: request.roundUri,
      roundSlices: [],
      evaluatedAt: "t",
      reason: "ModelMissing",
      message: "no model.json",
    };
    return failed;
  };
  return { rounds, evaluate };
}

const promoted = (w: ReturnType<typeof setup>) =>
  [...w.s3.objects.objects.keys()].filter((k) => k.startsWith("s3://models/"));
const rounds = (w: ReturnType<typeof setup>) =>
  (w.runs.runs.get("ns/demo")!.status as { rounds: { phase: string; reason?: string }[] }).rounds;
const editSpec = (w: ReturnType<typeof setup>, patch: Record<string, unknown>) => {
  const run = w.runs.runs.get("ns/demo")!;
  run.spec = { ...(run.spec as object), ...patch };
  run.metadata.generation = (run.metadata.generation ?? 1) + 1;
};

test("an evaluation remembered for round 0 of one artifacts prefix is not used for round 0 of another", async () => {
  const ev = countingEvaluator();
  const w = setup({ artifacts: { s3: { bucket: "runs", prefix: "exp1/" } } }, ev.evaluate);
  seed(w, "runs", "exp1/", 0, { recall: 0.9, model: true });
  await w.reconcile();
  assert.equal(rounds(w)[0]!.phase, "Passed");
  seed(w, "runs", "exp2/", 0, { model: true });
  editSpec(w, {
    artifacts: { s3: { bucket: "runs", prefix: "exp2/" } },
    promotion: { mode: "Auto", s3: { bucket: "models", prefix: "clip/" } },
  });
  for (let i = 0; i < 3; i++) await w.reconcile();
  assert.deepEqual(promoted(w), [], "nothing was promoted on the old metrics");
  assert.deepEqual(ev.rounds, [0], "the new round 0 was evaluated");
  assert.equal(rounds(w)[0]!.phase, "Rejected");
});

test("a cached eval.json is not trusted once the listing no longer shows it", async () => {
  const ev = countingEvaluator();
  const gate = (value: number) => ({
    evaluation: { gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value }] },
  });
  const w = setup(
    { promotion: { mode: "Auto", s3: { bucket: "models", prefix: "clip/" } }, ...gate(0.95) },
    ev.evaluate,
  );
  seed(w, "runs", "demo/", 0, { recall: 0.9, model: true });
  await w.reconcile();
  assert.equal(rounds(w)[0]!.phase, "Rejected");
  w.s3.objects.objects.delete("s3://runs/demo/rounds/0000/eval.json");
  editSpec(w, gate(0.5));
  await w.reconcile();
  assert.deepEqual(promoted(w), [], "no promotion without eval.json");
  assert.deepEqual(ev.rounds, [0], "the round was evaluated again");
});

test("a promoted version belongs to the round it was copied from, not to a round with its number", async () => {
  const w = setup({ promotion: { mode: "Auto", s3: { bucket: "models", prefix: "clip/" } } });
  seed(w, "runs", "demo/", 0, { recall: 0.9, model: true });
  for (let i = 0; i < 3; i++) await w.reconcile();
  assert.equal(rounds(w)[0]!.phase, "Promoted");
  seed(w, "runs", "other/", 0, { recall: 0.8, model: true });
  editSpec(w, { artifacts: { s3: { bucket: "runs", prefix: "other/" } } });
  for (let i = 0; i < 3; i++) await w.reconcile();
  assert.ok(promoted(w).includes("s3://models/clip/v2/version.json"), "the other round 0 became v2");
});

// Issue 10 item 3: a hung call frees its worker at the reconcile deadline and shows in stuck().
test("a reconcile that hangs past its deadline is retried later, not run twice, and reported stuck until it ends", async () => {
  const w = setup();
  let release: () => void = () => {};
  const hung = new Promise<void>((r) => (release = r));
  const objects = w.s3.objects;
  const list = objects.list.bind(objects);
  let calls = 0;
  objects.list = async (prefix: string) => {
    calls++;
    await hung;
    return list(prefix);
  };
  const reconciler = w.another({ reconcileDeadlineMs: 50 });
  const first = await reconciler.reconcile("ns/demo");
  assert.equal(first.kind, "retry");
  assert.deepEqual(reconciler.stuck(), ["ns/demo"]);
  const second = await reconciler.reconcile("ns/demo");
  assert.equal(second.kind, "retry");
  assert.equal(calls, 1, "the key was not reconciled again while the first reconcile runs");
  release();
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(reconciler.stuck(), []);
});

// Issue 10 item 4 / issue 13 item 6: a ConfigMap the run does not own is never taken over.
test("a model ConfigMap owned by someone else is refused with a Warning and a condition, and left as it was", async () => {
  const w = setup({ promotion: { mode: "Auto", s3: { bucket: "models", prefix: "clip/" }, configMapName: "model" } });
  const theirs = {
    apiVersion: "v1" as const,
    kind: "ConfigMap" as const,
    metadata: { name: "model", namespace: "ns", labels: {}, ownerReferences: [] },
    data: { mine: "yes" },
  };
  w.children.configMaps.set("model", structuredClone(theirs));
  seed(w, "runs", "demo/", 0, { recall: 0.9, model: true });
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.deepEqual(w.children.configMaps.get("model"), theirs);
  const status = w.runs.runs.get("ns/demo")!.status as {
    conditions: { type: string; status: string; reason: string; message: string }[];
  };
  const degraded = status.conditions.find((c) => c.type === "Degraded")!;
  assert.deepEqual([degraded.status, degraded.reason], ["True", "ConfigMapNotOwned"]);
  assert.match(degraded.message, /spec\.promotion\.configMapName/);
  assert.ok(w.events.list.some((e) => e.type === "Warning" && e.reason === "ConfigMapNotOwned"));
});

// Issue 10 item 5: the merge patch of status removes what is gone.
test("status.currentRound is removed once no round is active, and an idle run then waits for its poll", async () => {
  const w = setup();
  putSlice(w.s3.slices, "slices/", "2016");
  await w.reconcile();
  assert.equal((w.runs.runs.get("ns/demo")!.status as { currentRound?: { index: number } }).currentRound?.index, 0);
  // The round trains and passes (no gates): its Job completed and the trainer wrote _SUCCESS and eval.json.
  seed(w, "runs", "demo/", 0, { recall: 0.5 });
  w.children.trainer.set(0, { name: "demo-r0000-train", active: 0, succeeded: 1, failed: 0, complete: true });
  const outcome = await w.reconcile();
  const status = w.runs.runs.get("ns/demo")!.status as { phase: string; currentRound?: unknown };
  assert.equal(status.phase, "Waiting");
  assert.equal("currentRound" in status, false);
  assert.equal(outcome.kind, "requeueAfter");
  assert.ok(
    (outcome as { ms: number }).ms > 30_000,
    "waits for the poll interval (5m), not the 30 s active-round resync",
  );
});

// Issue 10 item 13: a Job the API server refuses shows in status and an Event, and backs off.
test("a refused Job is a Degraded condition and a Warning naming the cause, retried with backoff", async () => {
  const w = setup();
  w.children.refuse.set("Job", "exceeded quota: gpu-quota");
  putSlice(w.s3.slices, "slices/", "2016");
  const outcome = await w.reconcile();
  assert.equal(outcome.kind, "retry");
  const status = w.runs.runs.get("ns/demo")!.status as {
    conditions: { type: string; status: string; reason: string; message: string }[];
  };
  const degraded = status.conditions.find((c) => c.type === "Degraded")!;
  assert.deepEqual([degraded.status, degraded.reason], ["True", "JobCreateFailed"]);
  assert.match(degraded.message, /exceeded quota: gpu-quota/);
  assert.ok(
    w.events.list.some((e) => e.type === "Warning" && e.reason === "JobCreateFailed" && /gpu-quota/.test(e.message)),
  );
});

// Issue 10 item 11: a truncated plan.json is surfaced and waited on, not a hot loop.
test("a truncated plan.json makes the run Degraded naming the key, and the reconcile waits instead of spinning", async () => {
  const w = setup();
  putSlice(w.s3.slices, "slices/", "2016");
  await w.s3.objects.put("s3://runs/demo/rounds/0000/plan.json", '{"schemaVersion": 1, "run": {');
  const outcome = await w.reconcile();
  assert.equal(outcome.kind, "requeueAfter");
  assert.ok((outcome as { ms: number }).ms > 0);
  const status = w.runs.runs.get("ns/demo")!.status as {
    conditions: { type: string; status: string; reason: string; message: string }[];
  };
  const degraded = status.conditions.find((c) => c.type === "Degraded")!;
  assert.deepEqual([degraded.status, degraded.reason], ["True", "RoundPlanUnreadable"]);
  assert.match(degraded.message, /s3:\/\/runs\/demo\/rounds\/0000\/plan\.json/);
  assert.equal(w.children.objects.size, 0);
  assert.equal(
    new TextDecoder().decode(w.s3.objects.objects.get("s3://runs/demo/rounds/0000/plan.json")),
    '{"schemaVersion": 1, "run": {',
  );
});

// Issue 10 item 7: a transient error does not wipe history.
test("a missing Secret keeps the last known rounds and compute in status while Degraded", async () => {
  const w = setup({ source: { s3: { bucket: "data", prefix: "slices/", credentialsSecretRef: { name: "creds" } } } });
  w.children.secrets.set("creds", {
    AWS_ACCESS_KEY_ID: Buffer.from("a").toString("base64"),
    AWS_SECRET_ACCESS_KEY: Buffer.from("b").toString("base64"),
  });
  seed(w, "runs", "demo/", 0, { recall: 0.5 });
  w.children.trainer.set(0, {
    name: "demo-r0000-train",
    active: 0,
    succeeded: 1,
    failed: 0,
    complete: true,
    startTime: "2026-04-01T00:00:00Z",
    completionTime: "2026-04-01T00:10:00Z",
  });
  await w.reconcile();
  const before = structuredClone(w.runs.runs.get("ns/demo")!.status) as {
    rounds: unknown[];
    compute: { samplesSeen: number };
  };
  assert.equal(before.rounds.length, 1);
  w.children.secrets.delete("creds");
  await w.reconcile();
  const after = w.runs.runs.get("ns/demo")!.status as { phase: string; rounds: unknown[]; compute: unknown };
  assert.equal(after.phase, "Degraded");
  assert.deepEqual(after.rounds, before.rounds);
  assert.deepEqual(after.compute, before.compute);
});

// Issue 10 item 10: losing leadership stops in-flight work before its next write.
test("an evaluation in flight when leadership is lost writes no eval.json and no status", async () => {
  let release: () => void = () => {};
  let started: () => void = () => {};
  const running = new Promise<void>((r) => (started = r));
  const evaluate: Evaluate = async (_objects, request) => {
    started();
    await new Promise<void>((r) => (release = r));
    return {
      schemaVersion: 1,
      status: "Failed",
      round: request.round,
      roundUri: request.roundUri,
      roundSlices: [],
      evaluatedAt: "t",
      reason: "X",
      message: "x",
    };
  };
  const w = setup({}, evaluate);
  seed(w, "runs", "demo/", 0, {});
  const patches = w.runs.patches;
  const pass = w.reconcile();
  await running;
  w.reconciler.abortInFlight();
  release();
  const outcome = await pass;
  assert.equal(outcome.kind, "retry");
  assert.equal(w.s3.objects.objects.has("s3://runs/demo/rounds/0000/eval.json"), false);
  assert.equal(w.runs.patches, patches);
});

// Issue 10 item 6: trouble with one slice does not block a rollback.
import { promoteRound, readAlias } from "../../../operator/promotion/versions.ts";

test("pinVersion rolls back while a slice folder of the source cannot be read", async () => {
  const target = { bucket: "models", prefix: "clip/", alias: "production" };
  const w = setup({ promotion: { mode: "Manual", s3: { bucket: "models", prefix: "clip/" }, pinVersion: 1 } });
  for (const i of [0, 1]) {
    seed(w, "runs", "demo/", i, { recall: 0.5, model: true });
    await promoteRound(w.s3.objects, {
      target,
      run: { namespace: "ns", name: "demo", uid: "uid-1" },
      round: i,
      roundUri: `s3://runs/demo/rounds/000${i}/`,
      metrics: {},
      now: "t",
    });
  }
  putSlice(w.s3.slices, "slices/", "2016");
  w.s3.slices.fail("getText", { name: "AccessDenied", status: 403 }, 100);
  await w.reconcile();
  await w.reconcile();
  const alias = await readAlias(w.s3.objects, target);
  assert.ok(alias && !("invalid" in alias));
  assert.deepEqual([alias.version, alias.pinned], [1, true]);
  const status = w.runs.runs.get("ns/demo")!.status as { conditions: { type: string; reason: string }[] };
  assert.equal(
    status.conditions.find((c) => c.type === "Degraded")?.reason,
    "S3AccessDenied",
    "the slice trouble is still shown",
  );
});

// Issue 13 item 6: runtime guards name the field, create no Job and touch nothing.
test("a Secret without the expected key stalls the run naming the field, with no Job and no S3 write", async () => {
  const w = setup({ source: { s3: { bucket: "data", prefix: "slices/", credentialsSecretRef: { name: "creds" } } } });
  w.children.secrets.set("creds", { AWS_ACCESS_KEY_ID: Buffer.from("a").toString("base64") });
  putSlice(w.s3.slices, "slices/", "2016");
  await w.reconcile();
  const status = w.runs.runs.get("ns/demo")!.status as {
    conditions: { type: string; status: string; reason: string; message: string }[];
  };
  const stalled = status.conditions.find((c) => c.type === "Stalled")!;
  assert.deepEqual([stalled.status, stalled.reason], ["True", "SecretKeyMissing"]);
  assert.match(stalled.message, /spec\.source\.s3\.credentialsSecretRef: .*AWS_SECRET_ACCESS_KEY/);
  assert.equal(w.children.objects.size, 0);
  assert.equal(w.s3.objects.objects.size, 0);
});

test("a promotion bucket that cannot be read stalls the run naming spec.promotion.s3; no round starts", async () => {
  const w = setup({ promotion: { mode: "Auto", s3: { bucket: "models", prefix: "clip/" } } });
  putSlice(w.s3.slices, "slices/", "2016");
  const objects = w.s3.objects;
  const list = objects.list.bind(objects);
  objects.list = async (prefix: string) => {
    if (prefix.startsWith("s3://models/")) {
      throw new S3Failure(
        classifyS3Error(
          Object.assign(new Error("The specified bucket does not exist"), {
            name: "NoSuchBucket",
            $metadata: { httpStatusCode: 404 },
          }),
          `list ${prefix}`,
        ),
      );
    }
    return list(prefix);
  };
  await w.reconcile();
  const status = w.runs.runs.get("ns/demo")!.status as {
    conditions: { type: string; status: string; reason: string; message: string }[];
    currentRound?: unknown;
  };
  const stalled = status.conditions.find((c) => c.type === "Stalled")!;
  assert.deepEqual([stalled.status, stalled.reason], ["True", "S3NoSuchBucket"]);
  assert.match(stalled.message, /^spec\.promotion\.s3/);
  assert.equal(w.children.objects.size, 0, "no Job");
  assert.equal(w.s3.objects.objects.size, 0, "no plan written");
  assert.equal(status.currentRound, undefined);
});

// Issue 10, low: a notification during a poll is not swallowed by the poll's nextPollAt.
test("an S3 notification that arrives during a discovery pass makes the next pass come at once", async () => {
  const w = setup();
  let release: () => void = () => {};
  let inPoll: () => void = () => {};
  const polling = new Promise<void>((r) => (inPoll = r));
  const slices = w.s3.slices;
  const listFolders = slices.listFolders.bind(slices);
  slices.listFolders = async (prefix: string, startAfter: string | undefined) => {
    inPoll();
    await new Promise<void>((r) => (release = r));
    return listFolders(prefix, startAfter);
  };
  const pass = w.reconcile();
  await polling;
  assert.deepEqual(w.reconciler.notify("data", "slices/2016/_SUCCESS"), ["ns/demo"]);
  release();
  const outcome = await pass;
  assert.deepEqual(outcome, { kind: "requeueAfter", ms: 0 });
});

test("an architecture the trainer image does not ship stalls the run naming spec.model.architecture; no Job", async () => {
  const w = setup({ model: { architecture: "ViT-Nope-99" } });
  const reconciler = w.another({ trainerArchitectures: ["ticclip-tiny", "ViT-B-32"] });
  putSlice(w.s3.slices, "slices/", "2016");
  await reconciler.reconcile("ns/demo");
  const status = w.runs.runs.get("ns/demo")!.status as {
    conditions: { type: string; status: string; reason: string; message: string }[];
  };
  const stalled = status.conditions.find((c) => c.type === "Stalled")!;
  assert.deepEqual([stalled.status, stalled.reason], ["True", "ArchitectureNotShipped"]);
  assert.match(stalled.message, /^spec\.model\.architecture: ViT-Nope-99 .*ticclip-tiny, ViT-B-32/);
  assert.equal(w.children.objects.size, 0);
  assert.equal(w.s3.objects.objects.size, 0);
});

// Issue 12: a quiet steady state reads S3 only when a poll is due or something changed.
test("an idle run between polls lists nothing in S3; a Job change, a spec change or a due poll lists again", async () => {
  const w = setup();
  let lists = 0;
  const list = w.s3.objects.list.bind(w.s3.objects);
  w.s3.objects.list = (prefix) => {
    lists++;
    return list(prefix);
  };
  putSlice(w.s3.slices, "slices/", "2016");
  await w.reconcile();
  seed(w, "runs", "demo/", 0, { recall: 0.5 });
  w.children.trainer.set(0, { name: "demo-r0000-train", active: 0, succeeded: 1, failed: 0, complete: true });
  await w.reconcile();
  assert.equal((w.runs.runs.get("ns/demo")!.status as { phase: string }).phase, "Waiting");
  await w.reconcile(); // reads back what the last one wrote (verdict.json)
  const settled = lists;
  await w.reconcile();
  await w.reconcile();
  assert.equal(lists, settled, "no poll due and nothing changed: the previous listing is reused");
  w.children.trainer.set(0, {
    name: "demo-r0000-train",
    active: 0,
    succeeded: 1,
    failed: 0,
    complete: true,
    startTime: "t",
  });
  await w.reconcile();
  assert.equal(lists, settled + 1, "a Job change lists again");
  editSpec(w, { trainer: { image: "trainer:2", gpusPerNode: 0 } });
  await w.reconcile();
  assert.equal(lists, settled + 2, "a spec change lists again");
  assert.deepEqual(w.reconciler.notify("data", "slices/2017/_SUCCESS"), ["ns/demo"]);
  await w.reconcile();
  assert.equal(lists, settled + 3, "a due poll lists again");
  await w.reconcile();
  assert.equal(lists, settled + 3);
});

// Issue 12: catch-up after a restart reads round documents from the persisted cache by ETag.
test("a restarted reconciler reads only the document cache for unchanged rounds, and a changed document again", async () => {
  const w = setup();
  putSlice(w.s3.slices, "slices/", "2016");
  await w.reconcile();
  seed(w, "runs", "demo/", 0, { recall: 0.5 });
  w.children.trainer.set(0, { name: "demo-r0000-train", active: 0, succeeded: 1, failed: 0, complete: true });
  for (let i = 0; i < 3; i++) await w.reconcile(); // judged, verdict read back, cache written
  assert.equal(rounds(w)[0]!.phase, "Passed");
  const reads: string[] = [];
  const get = w.s3.objects.get.bind(w.s3.objects);
  w.s3.objects.get = (uri) => {
    reads.push(uri.slice("s3://runs/demo/".length));
    return get(uri);
  };
  const restart = () => w.another(); // another operator process
  const restarted = restart();
  w.runs.runs.get("ns/demo")!.status = undefined; // nothing to lean on but S3
  await restarted.reconcile("ns/demo");
  assert.deepEqual(reads, ["operator-cache.json"]);
  assert.equal(rounds(w)[0]!.phase, "Passed");

  const again = restart();
  await w.s3.objects.put(
    "s3://runs/demo/rounds/0000/verdict.json",
    JSON.stringify({ evaluatedAt: "other", judgedAt: "t", gates: [], verdict: { passed: true, message: "m" } }),
  );
  reads.length = 0;
  await again.reconcile("ns/demo");
  assert.ok(reads.includes("rounds/0000/verdict.json"), "a verdict.json with a new ETag is read");
  assert.ok(reads.includes("rounds/0000/eval.json"), "and the eval.json whose entry depends on it");
  assert.ok(!reads.includes("rounds/0000/plan.json"), "the unchanged plan.json is not");
});

test("a document cache that is not JSON, or holds a value of the wrong shape under a current ETag, is not used", async () => {
  const w = setup();
  putSlice(w.s3.slices, "slices/", "2016");
  await w.reconcile();
  seed(w, "runs", "demo/", 0, { recall: 0.5 });
  w.children.trainer.set(0, { name: "demo-r0000-train", active: 0, succeeded: 1, failed: 0, complete: true });
  for (let i = 0; i < 3; i++) await w.reconcile();
  const cacheUri = "s3://runs/demo/operator-cache.json";
  const cache = json(w.s3, cacheUri) as { schemaVersion: number; documents: [string, string, unknown][] };
  const plan = "s3://runs/demo/rounds/0000/plan.json";
  assert.ok(cache.documents.some(([uri]) => uri === plan));
  const reads: string[] = [];
  const get = w.s3.objects.get.bind(w.s3.objects);
  w.s3.objects.get = (uri) => {
    reads.push(uri.slice("s3://runs/demo/".length));
    return get(uri);
  };
  const corrupted = {
    ...cache,
    // The right ETag, a value that is no plan summary: it must be read from plan.json instead.
    documents: cache.documents.map(([uri, etag, value]) => [uri, etag, uri === plan ? { round: "zero" } : value]),
  };
  for (const body of ["{not json", JSON.stringify(corrupted)]) {
    await w.s3.objects.put(cacheUri, body);
    reads.length = 0;
    w.runs.runs.get("ns/demo")!.status = undefined;
    const restarted = w.another();
    assert.equal((await restarted.reconcile("ns/demo")).kind, "requeueAfter");
    assert.ok(reads.includes("rounds/0000/plan.json"), `plan.json read again (cache: ${body.slice(0, 10)})`);
    assert.equal(rounds(w)[0]!.phase, "Passed");
  }
});
