// Whole rounds against the real parts: kube-apiserver + the real Job controller, MinIO, the
// trainer (tiny CPU model) run by the local executor, and the operator as a process.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { getRun, kubectl, kubectlOk, waitFor } from "../support/cluster.ts";
import {
  OPERATOR_IMAGE,
  createBucket,
  localRunManifest,
  roundsTrained,
  runRounds,
  writeSlices,
  type Proc,
  startLocalRun,
  stopAll,
} from "../support/local-run.ts";
import { s3Client } from "../support/s3.ts";

let ns = "";
let executor: Proc;
let operator: Proc;

const rounds = (name: string) => runRounds(ns, name);
const roundsDone = (name: string, n: number) => roundsTrained(ns, name, n);

async function getJson(bucket: string, key: string): Promise<any> {
  const res = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return JSON.parse(await res.Body!.transformToString());
}

before(() => {
  // Evaluation Jobs run the operator image (mapped to this checkout by the local executor).
  ({ ns, executor, operator } = startLocalRun("rounds", {
    executor: {},
    operator: ["--evaluator-image", OPERATOR_IMAGE],
  }));
});
after(() => stopAll(operator, executor));

test("three slices landing one after another give three warm-started rounds", async () => {
  const data = await createBucket("rounds-data");
  const runs = await createBucket("rounds-runs");
  kubectlOk(
    ["create", "-f", "-"],
    JSON.stringify(localRunManifest({ namespace: ns, name: "seq", dataBucket: data, runsBucket: runs })),
  );
  for (const [i, id] of ["2016", "2017", "2018"].entries()) {
    writeSlices(data, [id]);
    await roundsDone("seq", i + 1);
  }
  const r = rounds("seq");
  assert.deepEqual(
    r.map((x) => [x.index, x.slices, x.phase]),
    [
      [0, ["2016"], "Passed"],
      [1, ["2017"], "Passed"],
      [2, ["2018"], "Passed"],
    ],
  );
  // Each plan warm-starts from the previous round's checkpoint and replays per CumulativeAll.
  for (const i of [1, 2]) {
    const plan = await getJson(runs, `seq/rounds/000${i}/plan.json`);
    assert.equal(plan.model.initCheckpoint, `s3://${runs}/seq/rounds/000${i - 1}/checkpoint.pt`);
    assert.deepEqual(
      plan.data.sources.map((s: { sliceId: string }) => s.sliceId),
      ["2016", "2017", "2018"].slice(0, i + 1),
    );
    const shares = plan.data.sources.map((s: { expectedShare: number }) => s.expectedShare);
    for (const share of shares) assert.ok(Math.abs(share - 1 / (i + 1)) < 1e-9, "equal-size slices share equally");
  }
  const status = getRun(ns, "seq")!.status as any;
  assert.equal(status.compute.samplesSeen, 3 * 256);
  assert.equal(status.compute.savingVsOracle, 2, "(T+1)/2 at T=3");
  assert.equal(status.slices.consumed, 3);
  const jobs = JSON.parse(kubectlOk(["get", "jobs", "-n", ns, "-l", "ticclip.dev/run=seq", "-o", "json"]))
    .items as Array<{ metadata: { name: string } }>;
  assert.deepEqual(
    jobs.map((j) => j.metadata.name).sort(),
    ["seq-r0000-eval", "seq-r0000-train", "seq-r0001-eval", "seq-r0001-train", "seq-r0002-eval", "seq-r0002-train"],
    "one training and one evaluation Job per round",
  );
  const ev = await getJson(runs, "seq/rounds/0002/eval.json");
  assert.equal(ev.status, "Succeeded");
  assert.equal(ev.matrix.values.length, 3, "TiC matrix: a row per round");
  for (const row of ev.matrix.values) for (const v of row) assert.ok(v === null || (v >= 0 && v <= 1));
});

test("a trainer exit 2 (invalid plan) fails the round without retries", async () => {
  const data = await createBucket("bad-data");
  const runs = await createBucket("bad-runs");
  // The trainer does not know this architecture: a permanent error, exit code 2.
  const m = localRunManifest({
    namespace: ns,
    name: "badarch",
    dataBucket: data,
    runsBucket: runs,
    spec: { model: { architecture: "no-such-model" } },
  });
  kubectlOk(["create", "-f", "-"], JSON.stringify(m));
  writeSlices(data, ["2016"]);
  const failed = await waitFor(
    "round 0 failed",
    () => rounds("badarch").find((x) => x.phase === "Failed"),
    180_000,
    1000,
  );
  assert.equal(failed.reason, "PodFailurePolicy");
  assert.match(failed.message ?? "", /exit(ed)? (code )?2/);
  const job = JSON.parse(kubectlOk(["get", "job", "badarch-r0000-train", "-n", ns, "-o", "json"]));
  assert.equal(job.status.failed, 1, "no retry after exit 2");
  const events = kubectlOk([
    "get",
    "events",
    "-n",
    ns,
    "--field-selector",
    "involvedObject.name=badarch",
    "-o",
    "jsonpath={.items[*].reason}",
  ]);
  assert.match(events, /RoundFailed/);
  const ready = (getRun(ns, "badarch")!.status!.conditions ?? []).find((c) => c.type === "Ready");
  assert.equal(ready?.status, "False");
});

test("deleting a run garbage-collects its Jobs; S3 artifacts stay", async () => {
  kubectlOk(["delete", "ccr", "badarch", "-n", ns]);
  await waitFor(
    "jobs of badarch gone",
    () => {
      const res = kubectl(["get", "jobs", "-n", ns, "-l", "ticclip.dev/run=badarch", "-o", "name"]);
      return res.code === 0 && res.stdout.trim() === "" ? true : undefined;
    },
    60_000,
    1000,
  );
});

test("evaluated rounds are gated and promoted; the ConfigMap follows; pinVersion rolls back", async () => {
  const data = await createBucket("promo-data");
  const runs = await createBucket("promo-runs");
  const models = await createBucket("promo-models");
  const spec = {
    evaluation: {
      runner: { mode: "InProcess" },
      gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0 }],
    },
    promotion: {
      mode: "Auto",
      s3: { bucket: models, prefix: "clip/" },
      alias: "production",
      configMapName: "promo-model",
    },
  };
  kubectlOk(
    ["create", "-f", "-"],
    JSON.stringify(localRunManifest({ namespace: ns, name: "promo", dataBucket: data, runsBucket: runs, spec })),
  );
  const cmVersion = () => {
    const res = kubectl(["get", "configmap", "promo-model", "-n", ns, "-o", "jsonpath={.data.version}"]);
    return res.code === 0 ? res.stdout.trim() : undefined;
  };
  for (const [i, id] of ["2016", "2017"].entries()) {
    writeSlices(data, [id]);
    await roundsDone("promo", i + 1);
    await waitFor(`ConfigMap at v${i + 1}`, () => (cmVersion() === String(i + 1) ? true : undefined), 60_000, 500);
  }
  const r = rounds("promo") as Array<{
    phase: string;
    promotedVersion?: number;
    metrics?: Record<string, number>;
    gates?: Array<{ passed: boolean }>;
  }>;
  assert.deepEqual(
    r.map((x) => [x.phase, x.promotedVersion]),
    [
      ["Promoted", 1],
      ["Promoted", 2],
    ],
  );
  assert.ok(
    r.every((x) => typeof x.metrics?.["retrieval.id.meanRecallAt1"] === "number" && x.gates?.[0]?.passed === true),
  );
  const evalJson = await getJson(runs, "promo/rounds/0001/eval.json");
  assert.equal(evalJson.status, "Succeeded");
  assert.deepEqual(evalJson.matrix.rounds, [0, 1], "the TiC matrix has a row per round so far");
  const alias = await getJson(models, "clip/production.json");
  assert.equal(alias.version, 2);
  assert.equal((getRun(ns, "promo")!.status as any).promoted.version, 2);
  // Rollback: pin v1; the alias and the ConfigMap follow, the versions stay immutable.
  kubectlOk(["patch", "ccr", "promo", "-n", ns, "--type", "merge", "-p", '{"spec":{"promotion":{"pinVersion":1}}}']);
  await waitFor("ConfigMap back at v1", () => (cmVersion() === "1" ? true : undefined), 60_000, 500);
  assert.equal((await getJson(models, "clip/production.json")).version, 1);
  await waitFor(
    "status.promoted at v1",
    () => ((getRun(ns, "promo")!.status as any).promoted?.version === 1 ? true : undefined),
    30_000,
    500,
  );
});
