// Issue 21 ("Operator trust, round two"): the Reconciler against the fakes of its ports, one test
// per defect, each failing before its fix.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { ReconcilerDeps } from "../../../operator/controller/reconcile.ts";
import { classifyS3Error, S3Failure } from "../../../operator/s3/errors.ts";
import { putSlice } from "../data/memory-store.ts";
import { fakeWorld, WORLD_NOW } from "./fakes.ts";

const NOW = WORLD_NOW;

type Condition = { type: string; status: string; reason: string; message: string };
type Status = {
  phase?: string;
  conditions?: Condition[];
  promoted?: { version: number; round: number };
  rounds?: { index: number; phase: string; reason?: string; message?: string; slices: string[] }[];
  currentRound?: { index: number };
  observedGeneration?: number;
};

function setup(spec: Record<string, unknown> = {}, deps: Partial<ReconcilerDeps> = {}, uid = "uid-1") {
  const w = fakeWorld({ spec, deps, uid });
  return {
    ...w,
    status: () => w.status() as Status,
    /** An S3 event for the source: the next reconcile polls and lists the artifacts again. */
    poke: () => w.reconciler.notify("data", "slices/any/_SUCCESS"),
  };
}

const promotion = { mode: "Auto", s3: { bucket: "models", prefix: "clip/" }, configMapName: "model" };
const ALIAS = "s3://models/clip/production.json";

// ---- High 1: every pass converges the alias, then the ConfigMap, then status.promoted ---------------

test("High 1: a promotion whose alias write failed is completed by a later pass; ConfigMap and status follow", async () => {
  const w = setup({ promotion });
  w.seed(0, { recall: 0.9, model: true });
  let failing = true;
  w.s3.objects.failOn = (op, uri) => failing && op === "put" && uri === ALIAS;
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.ok(w.s3.objects.objects.has("s3://models/clip/v1/version.json"), "v1 was made");
  assert.equal(w.s3.objects.objects.has(ALIAS), false, "the alias write failed");
  failing = false;
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.equal(w.json(ALIAS)?.version, 1, "the alias points at v1");
  assert.equal(w.children.configMaps.get("model")?.data.version, "1", "the ConfigMap follows the alias");
  assert.equal(w.status().promoted?.version, 1, "status.promoted follows the alias");
  assert.equal(w.status().rounds?.[0]?.phase, "Promoted");
});

test("High 1: when the alias write of a later round fails, the alias still moves from the old version to the new", async () => {
  const w = setup({ promotion });
  w.seed(0, { recall: 0.5, model: true });
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.equal(w.json(ALIAS)?.version, 1);
  w.seed(1, { recall: 0.6, model: true });
  w.poke();
  let failing = true;
  w.s3.objects.failOn = (op, uri) => failing && op === "put" && uri === ALIAS;
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.ok(w.s3.objects.objects.has("s3://models/clip/v2/version.json"));
  assert.equal(w.json(ALIAS)?.version, 1);
  failing = false;
  // A restarted operator (no memory) converges too.
  const restarted = w.another();
  for (let i = 0; i < 4; i++) await restarted.reconcile("ns/demo");
  assert.equal(w.json(ALIAS)?.version, 2);
  assert.equal(w.children.configMaps.get("model")?.data.version, "2");
  assert.equal(w.status().promoted?.version, 2);
});

test("High 1: a pinned alias is put back on the pinned version when something moved it", async () => {
  const w = setup({ promotion: { ...promotion, pinVersion: 1 } });
  w.seed(0, { recall: 0.5, model: true });
  for (let i = 0; i < 4; i++) await w.reconcile();
  w.seed(1, { recall: 0.6, model: true });
  w.poke();
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.ok(w.s3.objects.objects.has("s3://models/clip/v2/version.json"), "v2 is made while pinned");
  assert.deepEqual([w.json(ALIAS)?.version, w.json(ALIAS)?.pinned], [1, true]);
  assert.equal(w.children.configMaps.get("model")?.data.version, "1");
  // Someone (an old operator, a script) moves the alias to v2: the next look at the promotion prefix
  // (at most PROMOTION_TTL_MS later; here a restarted operator) puts it back.
  const moved = { ...w.json(ALIAS), version: 2, pinned: false, uri: "s3://models/clip/v2/" };
  await w.s3.objects.put(ALIAS, JSON.stringify(moved));
  const restarted = w.another();
  for (let i = 0; i < 3; i++) await restarted.reconcile("ns/demo");
  assert.deepEqual([w.json(ALIAS)?.version, w.json(ALIAS)?.pinned], [1, true]);
  assert.equal(w.status().promoted?.version, 1);
});

// ---- High 2: a short S3 blip never skips a slice ----------------------------------------------------

test("High 2: a slice folder answering 503 for many polls holds back the slices after it, named in a condition, and trains in order once readable", async () => {
  const w = setup();
  for (const id of ["2016", "2017", "2018"]) putSlice(w.s3.slices, "slices/", id);
  let failing = true;
  const read = w.s3.slices.getText.bind(w.s3.slices);
  w.s3.slices.getText = async (key) => {
    if (failing && key === "slices/2017/manifest.json") {
      const err = Object.assign(new Error("Please reduce your request rate."), {
        name: "SlowDown",
        $metadata: { httpStatusCode: 503 },
      });
      throw new S3Failure(classifyS3Error(err, `get s3://data/${key}`), { cause: err });
    }
    return read(key);
  };
  await w.reconcile();
  assert.deepEqual(
    w.status().rounds?.map((r) => r.slices),
    [["2016"]],
    "the slice before it trains",
  );
  // Round 0 trains and passes; ten more polls go by with 2017 refused.
  w.seed(0, { recall: 0.5 });
  w.children.trainer.set(0, { name: "demo-r0000-train", active: 0, succeeded: 1, failed: 0, complete: true });
  for (let i = 0; i < 10; i++) {
    w.setNow(new Date(NOW.getTime() + (i + 1) * 60_000));
    w.poke();
    await w.reconcile();
  }
  assert.deepEqual(
    w.status().rounds?.map((r) => [r.index, r.slices]),
    [[0, ["2016"]]],
    "no round on 2018 while 2017 cannot be read",
  );
  assert.equal((w.status() as { slices?: { invalid?: unknown[] } }).slices?.invalid, undefined, "2017 is not invalid");
  const degraded = w.condition("Degraded")!;
  assert.deepEqual([degraded.status, degraded.reason], ["True", "S3Throttled"]);
  assert.match(degraded.message, /slice 2017 .*s3:\/\/data\/slices\/2017\/manifest\.json.*later slices wait/);
  failing = false;
  w.poke();
  await w.reconcile();
  assert.deepEqual(
    w.status().rounds?.map((r) => [r.index, r.slices]),
    [
      [0, ["2016"]],
      [1, ["2017"]],
    ],
    "2017 trains next, in order",
  );
  assert.equal(w.condition("Ready")?.status, "True");
});

test("High 2: --slice-unreadable-after bounds how long transient failures hold a slice", async () => {
  const w = setup({}, { sliceUnreadableAfterMs: 3600_000 });
  for (const id of ["2016", "2017"]) putSlice(w.s3.slices, "slices/", id);
  w.s3.slices.fail("getText", { name: "InternalError", status: 500 }, 1000);
  for (let i = 0; i <= 7; i++) {
    w.setNow(new Date(NOW.getTime() + i * 600_000));
    w.poke();
    await w.reconcile();
  }
  const invalid = (w.status() as { slices?: { invalid?: { id: string; reason: string }[] } }).slices?.invalid ?? [];
  assert.deepEqual(
    invalid.map((i) => i.id),
    ["2016", "2017"],
  );
  assert.match(invalid[0]!.reason, /^Unreadable: failing for 60m \(7 polls\): S3ServerError/);
});

// ---- High 3: an evaluation counts only for its round and the bytes it scored ------------------------

const EVAL_IMAGE = "op:1";
const copyInto = async (w: ReturnType<typeof setup>, from: number, to: number, file: string) => {
  const pad = (n: number) => String(n).padStart(4, "0");
  const body = w.s3.objects.objects.get(`s3://runs/demo/rounds/${pad(from)}/${file}`)!;
  await w.s3.objects.put(`s3://runs/demo/rounds/${pad(to)}/${file}`, body);
};

test("High 3: an eval.json and verdict.json of round 0 placed in round 1's folder are refused: Warning, a fresh evaluation, no promotion", async () => {
  const w = setup({ promotion }, { evaluatorImage: EVAL_IMAGE });
  w.seed(0, { recall: 0.9, model: true });
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.equal(w.json(ALIAS)?.version, 1);
  w.seed(1, { model: true }); // trained, not evaluated
  await copyInto(w, 0, 1, "eval.json");
  await copyInto(w, 0, 1, "verdict.json");
  w.poke();
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.equal(w.s3.objects.objects.has("s3://models/clip/v2/version.json"), false, "round 1 is not promoted");
  assert.equal(w.json(ALIAS)?.version, 1);
  const round1 = w.status().rounds?.find((r) => r.index === 1);
  assert.deepEqual([round1?.phase, round1?.reason], ["Evaluating", "EvaluationMismatch"]);
  assert.match(round1?.message ?? "", /eval\.json names round 0, not 1/);
  assert.equal(
    w.events.list.filter((e) => e.type === "Warning" && e.reason === "EvaluationMismatch").length,
    1,
    "one Warning, not one per pass",
  );
  const evalJobs = [...w.children.objects.keys()].filter((k) => /^Job\/demo-r0001-eval/.test(k));
  assert.equal(evalJobs.length, 1, "a fresh evaluation Job for round 1");
  assert.match(evalJobs[0]!, /^Job\/demo-r0001-eval-[0-9a-f]{6}$/);
});

test("High 3: encoders that are not the bytes eval.json scored are never promoted; the round is evaluated again", async () => {
  const w = setup({ promotion }, { evaluatorImage: EVAL_IMAGE });
  // eval.json scored other encoders than the ones in the folder now (swapped after evaluation).
  w.seed(0, { recall: 0.9, model: true, scored: { image: "the evaluated image encoder", text: "the text encoder" } });
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.equal(w.s3.objects.objects.has("s3://models/clip/v1/version.json"), false);
  assert.equal(w.s3.objects.objects.has(ALIAS), false);
  assert.equal(w.status().rounds?.[0]?.reason, "EvaluationMismatch");
  assert.match(w.status().rounds?.[0]?.message ?? "", /image_encoder\.onnx has sha256 [0-9a-f]{64}, eval\.json scored/);
  assert.ok([...w.children.objects.keys()].some((k) => /^Job\/demo-r0000-eval-[0-9a-f]{6}$/.test(k)));
});

test("High 3: encoders swapped after the verdict, while the copy runs, leave no version; the next pass evaluates again", async () => {
  const w = setup({ promotion }, { evaluatorImage: EVAL_IMAGE });
  w.seed(0, { recall: 0.9, model: true });
  const objects = w.s3.objects;
  const copy = objects.copy.bind(objects);
  let swapped = false;
  objects.copy = async (from: string, to: string) => {
    if (!swapped && from.endsWith("rounds/0000/image_encoder.onnx")) {
      swapped = true;
      await objects.put(from, "another image encoder");
    }
    return copy(from, to);
  };
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.ok(swapped);
  assert.equal(objects.objects.has("s3://models/clip/v1/version.json"), false, "no version of unevaluated bytes");
  assert.ok(w.events.list.some((e) => e.type === "Warning" && e.reason === "EvaluatedBytesChanged"));
  assert.equal(w.status().rounds?.[0]?.reason, "EvaluationMismatch");
  assert.ok([...w.children.objects.keys()].some((k) => /^Job\/demo-r0000-eval-[0-9a-f]{6}$/.test(k)));
});

// ---- High 4: a run acts with its own credentials, and never over another run's promotion -----------

test("High 4: a run without credentialsSecretRef is Stalled naming the field while --allow-default-credentials is off; no S3 call, no Job", async () => {
  const w = setup({}, { allowDefaultCredentials: false });
  putSlice(w.s3.slices, "slices/", "2016");
  let calls = 0;
  for (const store of [w.s3.objects, w.s3.slices] as unknown as Record<string, unknown>[]) {
    for (const op of ["get", "put", "list", "copy", "putIfAbsent", "listFolders", "listObjects", "getText", "exists"]) {
      const f = store[op];
      if (typeof f === "function")
        store[op] = (...args: unknown[]) => {
          calls++;
          return (f as (...a: unknown[]) => unknown).apply(store, args);
        };
    }
  }
  const outcome = await w.reconcile();
  assert.equal(outcome.kind, "requeueAfter");
  const stalled = w.condition("Stalled")!;
  assert.deepEqual([stalled.status, stalled.reason], ["True", "CredentialsSecretRequired"]);
  assert.match(stalled.message, /^spec\.source\.s3\.credentialsSecretRef: .*--allow-default-credentials/);
  assert.equal(calls, 0, "the operator's own identity was never used");
  assert.equal(w.children.objects.size, 0);
  // With a Secret named, the same run goes on.
  const run = w.runs.runs.get("ns/demo")!;
  run.spec = {
    ...(run.spec as object),
    source: { s3: { bucket: "data", prefix: "slices/", credentialsSecretRef: { name: "creds" } } },
  };
  run.metadata.generation = 2;
  w.children.secrets.set("creds", {
    AWS_ACCESS_KEY_ID: Buffer.from("a").toString("base64"),
    AWS_SECRET_ACCESS_KEY: Buffer.from("b").toString("base64"),
  });
  await w.reconcile();
  assert.equal(w.condition("Stalled")?.status, "False");
  assert.ok(w.children.objects.has("Job/demo-r0000-train"));
});

const theirAlias = (version: number) => ({
  schemaVersion: 1,
  alias: "production",
  version,
  round: 0,
  run: { namespace: "team-b", name: "theirs", uid: "uid-b" },
  uri: `s3://models/clip/v${version}/`,
  uris: {},
  metrics: {},
  promotedAt: "2026-01-01T00:00:00Z",
  pinned: false,
});

test("High 4: an alias written by another run is never replaced: the run is Stalled with AliasOwnedByAnotherRun", async () => {
  const w = setup({ promotion });
  await w.s3.objects.put(ALIAS, JSON.stringify(theirAlias(7)));
  const before = w.s3.objects.objects.get(ALIAS);
  w.seed(0, { recall: 0.9, model: true });
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.deepEqual(w.s3.objects.objects.get(ALIAS), before, "their alias is untouched");
  assert.equal(w.s3.objects.objects.has("s3://models/clip/v1/version.json"), false, "nothing written there");
  const stalled = w.condition("Stalled")!;
  assert.deepEqual([stalled.status, stalled.reason], ["True", "AliasOwnedByAnotherRun"]);
  assert.match(stalled.message, /^spec\.promotion\.alias: .*team-b\/theirs/);
  assert.equal(w.children.configMaps.has("model"), false, "no ConfigMap from their pointer");
});

test("High 4 / check: versions made by another run in the promotion prefix refuse this run's promotions (PromotionPrefixShared)", async () => {
  const w = setup({ promotion });
  const theirs = {
    schemaVersion: 1,
    version: 1,
    round: 0,
    run: { namespace: "team-b", name: "theirs", uid: "uid-b" },
    sourceUri: "s3://their-runs/rounds/0000/",
    files: [],
    metrics: {},
    createdAt: "2026-01-01T00:00:00Z",
  };
  await w.s3.objects.put("s3://models/clip/v1/version.json", JSON.stringify(theirs));
  w.seed(0, { recall: 0.9, model: true });
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.deepEqual(
    [...w.s3.objects.objects.keys()].filter((k) => k.startsWith("s3://models/")),
    ["s3://models/clip/v1/version.json"],
    "no v2, no alias",
  );
  const stalled = w.condition("Stalled")!;
  assert.deepEqual([stalled.status, stalled.reason], ["True", "PromotionPrefixShared"]);
  assert.match(stalled.message, /^spec\.promotion\.s3: s3:\/\/models\/clip\/v1\/ was made by run team-b\/theirs/);
});

test("High 4: a run recreated under the same name (new uid) carries on with its predecessor's versions and alias", async () => {
  const w = setup({ promotion });
  w.seed(0, { recall: 0.5, model: true, run: { namespace: "ns", name: "demo", uid: "uid-1" } });
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.equal(w.json(ALIAS)?.version, 1);
  // Deleted and created again from Git: a new uid, the same artifacts and promotion prefixes.
  const run = w.runs.runs.get("ns/demo")!;
  run.metadata.uid = "uid-2";
  run.status = undefined;
  w.children.configMaps.delete("model"); // garbage-collected with the old run (its owner)
  w.seed(1, { recall: 0.6, model: true, run: { namespace: "ns", name: "demo", uid: "uid-2" } });
  const recreated = w.another();
  for (let i = 0; i < 5; i++) await recreated.reconcile("ns/demo");
  assert.equal(w.condition("Stalled")?.status, "False", JSON.stringify(w.condition("Stalled")));
  assert.deepEqual([w.json(ALIAS)?.version, w.json(ALIAS)?.run.uid], [2, "uid-2"]);
  assert.equal(w.status().promoted?.version, 2);
});

// ---- Medium 6: a round folder belongs to the run named in its plan -----------------------------------

const folder = (w: ReturnType<typeof setup>, index: number) =>
  [...w.s3.objects.objects.keys()]
    .filter((k) => k.startsWith(`s3://runs/demo/rounds/${String(index).padStart(4, "0")}/`))
    .sort();

test("Medium 6: another run's round folder under this run's artifacts prefix stalls it with the folder named; no Job, no write", async () => {
  const w = setup();
  putSlice(w.s3.slices, "slices/", "2016");
  // A manifest copied to another namespace: that run's round 0 is training under the same prefix.
  w.seed(0, { trained: false, slices: ["2016"], run: { namespace: "team-b", name: "copy", uid: "uid-b" } });
  const before = folder(w, 0);
  await w.reconcile();
  await w.reconcile();
  const stalled = w.condition("Stalled")!;
  assert.deepEqual([stalled.status, stalled.reason], ["True", "RoundFolderOwnedByAnotherRun"]);
  assert.match(
    stalled.message,
    /^spec\.artifacts\.s3: s3:\/\/runs\/demo\/rounds\/0000\/plan\.json belongs to run team-b\/copy/,
  );
  assert.equal(w.children.objects.size, 0, "no second trainer Job for their round");
  assert.deepEqual(folder(w, 0), before, "nothing written into their folder");
  assert.deepEqual(folder(w, 1), [], "no round of ours planned beside theirs");
});

test("Medium 6: a recreated run (same name, new uid) keeps its predecessor's finished rounds and leaves an unfinished one alone", async () => {
  const w = setup({}, {}, "uid-2");
  for (const id of ["2016", "2017"]) putSlice(w.s3.slices, "slices/", id);
  const old = { namespace: "ns", name: "demo", uid: "uid-1" };
  w.seed(0, { recall: 0.5, slices: ["2016"], run: old }); // trained and evaluated by the predecessor
  w.seed(1, { trained: false, slices: ["2017"], run: old }); // its Job was running when the run was deleted
  const before = folder(w, 1);
  for (let i = 0; i < 3; i++) await w.reconcile();
  assert.equal(w.children.objects.has("Job/demo-r0001-train"), false, "no Job writes into the predecessor's folder");
  assert.deepEqual(folder(w, 1), before, "nothing written there (no failed.json either)");
  const rounds = w.status().rounds ?? [];
  assert.deepEqual(
    rounds.map((r) => [r.index, r.phase]),
    [
      [0, "Passed"],
      [1, "Failed"],
      [2, "Pending"],
    ],
    JSON.stringify(rounds),
  );
  assert.equal(rounds[1]!.reason, "PredecessorRound");
  assert.match(
    rounds[1]!.message ?? "",
    /earlier run ns\/demo \(uid uid-1\); round 2 of this run trains its slices again/,
  );
  const plan = w.json("s3://runs/demo/rounds/0002/plan.json");
  assert.deepEqual([plan.newSlices, plan.run.uid], [["2017"], "uid-2"], "its slice trains in a new round of this run");
  assert.equal(plan.model.initCheckpoint, null, "from the checkpoint the left round started from");
  assert.ok(w.children.objects.has("Job/demo-r0002-train"));
  assert.ok(
    w.events.list.some(
      (e) =>
        e.type === "Warning" &&
        e.reason === "PredecessorRound" &&
        /did not finish; this run leaves its folder alone/.test(e.message),
    ),
  );
});

// ---- Medium 9: every error path of act ends in a status patch; nothing blocks the rounds after it -----

test("Medium 9: a passing round without checkpoint.pt is not promoted, says why, and does not hold back the next round", async () => {
  const w = setup({ promotion });
  for (const id of ["2016", "2017"]) putSlice(w.s3.slices, "slices/", id);
  w.seed(0, { recall: 0.9, model: true, slices: ["2016"] });
  w.s3.objects.objects.delete("s3://runs/demo/rounds/0000/checkpoint.pt");
  for (let i = 0; i < 4; i++) await w.reconcile();
  const rounds = w.status().rounds ?? [];
  assert.deepEqual([rounds[0]?.phase, rounds[0]?.reason], ["Passed", "NotPromotable"]);
  assert.match(rounds[0]?.message ?? "", /lacks checkpoint\.pt/);
  assert.ok(w.events.list.some((e) => e.type === "Warning" && e.reason === "NotPromotable"));
  assert.deepEqual(rounds[1]?.slices, ["2017"], "the next round started");
  assert.ok(w.children.objects.has("Job/demo-r0001-train"));
  assert.equal(w.s3.objects.objects.has("s3://models/clip/v1/version.json"), false);
});

test("Medium 9: a pinVersion naming no version is Stalled naming the field, with the new observedGeneration and an Event", async () => {
  const w = setup({ promotion });
  w.seed(0, { recall: 0.9, model: true });
  for (let i = 0; i < 4; i++) await w.reconcile();
  const run = w.runs.runs.get("ns/demo")!;
  run.spec = { ...(run.spec as object), promotion: { ...promotion, pinVersion: 7 } };
  run.metadata.generation = 2;
  await w.reconcile();
  assert.equal(w.status().observedGeneration, 2);
  const stalled = w.condition("Stalled")!;
  assert.deepEqual([stalled.status, stalled.reason], ["True", "PinnedVersionNotFound"]);
  assert.match(
    stalled.message,
    /^spec\.promotion\.pinVersion: s3:\/\/models\/clip\/v7\/ is not a complete version \(versions: 1\)/,
  );
  assert.ok(w.events.list.some((e) => e.type === "Warning" && e.reason === "PinnedVersionNotFound"));
  assert.equal(w.json(ALIAS)?.version, 1, "the alias stays where it was");
});

test("Medium 9: an S3 failure while promoting ends in status (reason, field, observedGeneration) and is retried", async () => {
  const w = setup({ promotion });
  w.seed(0, { recall: 0.9, model: true });
  const run = w.runs.runs.get("ns/demo")!;
  run.metadata.generation = 3;
  let failing = true;
  w.s3.objects.failOn = (op, uri) => failing && op === "copy" && uri.startsWith("s3://models/");
  const outcomes = [];
  for (let i = 0; i < 3; i++) outcomes.push((await w.reconcile()).kind);
  assert.equal(outcomes.at(-1), "retry");
  assert.equal(w.status().observedGeneration, 3);
  const ready = w.condition("Ready")!;
  assert.deepEqual([ready.status, ready.reason], ["False", "PromotionFailed"]);
  assert.match(
    ready.message,
    /^spec\.promotion\.s3: round 0: promoting failed: .*injected failure: copy to s3:\/\/models\/clip\/v1\//,
  );
  assert.ok(w.events.list.some((e) => e.type === "Warning" && e.reason === "PromotionFailed"));
  failing = false;
  for (let i = 0; i < 4; i++) await w.reconcile();
  assert.equal(w.json(ALIAS)?.version, 1);
  assert.equal(w.condition("Ready")?.status, "True");
});

test("Medium 9: a failure outside act (the API server refusing a Job list) still ends in status and one Event", async () => {
  const w = setup();
  putSlice(w.s3.slices, "slices/", "2016");
  w.children.roundJobs = async () => {
    throw new Error("jobs.batch is forbidden: User cannot list resource");
  };
  for (let i = 0; i < 3; i++) assert.equal((await w.reconcile()).kind, "retry");
  const ready = w.condition("Ready")!;
  assert.deepEqual([ready.status, ready.reason], ["False", "ReconcileFailed"]);
  assert.match(ready.message, /jobs\.batch is forbidden/);
  assert.equal(w.events.list.filter((e) => e.reason === "ReconcileFailed").length, 1);
});

// ---- Check these: an evaluation that fails without eval.json is not run again after the Job's TTL ----

test("check: an evaluation Job that failed without eval.json is recorded, so the round is not evaluated again after the Job's TTL", async () => {
  const w = setup({}, { evaluatorImage: EVAL_IMAGE });
  w.seed(0, { model: true });
  w.children.evaluator.set(0, {
    name: "demo-r0000-eval",
    active: 0,
    succeeded: 0,
    failed: 1,
    complete: false,
    failure: { reason: "BackoffLimitExceeded", message: "evaluator exited 1" },
  });
  w.children.objects.set("Job/demo-r0000-eval", {});
  for (let i = 0; i < 3; i++) await w.reconcile();
  const ev = w.json("s3://runs/demo/rounds/0000/eval.json");
  assert.deepEqual([ev?.status, ev?.round, ev?.reason], ["Failed", 0, "EvaluationFailed"]);
  assert.match(ev?.message ?? "", /demo-r0000-eval: BackoffLimitExceeded: evaluator exited 1/);
  assert.equal(w.status().rounds?.[0]?.phase, "Rejected");
  // Seven days later the Job is gone (ttlSecondsAfterFinished).
  w.children.evaluator.delete(0);
  w.children.objects.delete("Job/demo-r0000-eval");
  w.poke();
  for (let i = 0; i < 3; i++) await w.reconcile();
  assert.equal(w.children.objects.size, 0, "no evaluation Job created again");
  assert.equal(w.status().rounds?.[0]?.phase, "Rejected");
});
