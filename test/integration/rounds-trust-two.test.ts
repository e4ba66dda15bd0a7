// Issue 21 ("Operator trust, round two"), the High items against the real kube-apiserver, MinIO and
// the operator as a process. S3 faults come from a proxy in front of MinIO (test/support/s3-proxy.ts)
// that fails chosen keys for a while and then heals; rounds start from folders already trained.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { GetObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { getRun, kubectl, kubectlOk, waitFor } from "../support/cluster.ts";
import { createBucket, localRunManifest, runRounds, type Proc, startLocalRun } from "../support/local-run.ts";
import { roundFiles, type SeedOptions } from "../support/rounds.ts";
import { faultProxy, type FaultProxy } from "../support/s3-proxy.ts";
import { putObject, s3Client } from "../support/s3.ts";
import { putSlice } from "./data/slices.ts";

let ns = "";
let operator: Proc;
let proxy: FaultProxy;

before(async () => {
  proxy = await faultProxy();
  ({ ns, operator } = startLocalRun("trust2", { operator: ["--s3-timeout-seconds", "3"] }));
});
after(async () => {
  await operator?.stop();
  await proxy?.close();
});

async function seed(bucket: string, name: string, index: number, o: SeedOptions = {}): Promise<void> {
  for (const [key, body] of roundFiles(bucket, `${name}/`, index, { run: { namespace: ns, name }, ...o }))
    await putObject(s3Client(), bucket, key, body);
}

async function exists(bucket: string, key: string): Promise<boolean> {
  try {
    await s3Client().send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch {
    return false;
  }
}

async function readJson(bucket: string, key: string): Promise<any> {
  try {
    const out = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return JSON.parse(await out.Body!.transformToString());
  } catch {
    return undefined;
  }
}

const create = (manifest: unknown) => kubectlOk(["create", "-f", "-"], JSON.stringify(manifest));
type Condition = { type: string; status: string; reason: string; message: string };
const status = (name: string) =>
  (getRun(ns, name)?.status ?? {}) as { conditions?: Condition[]; promoted?: { version: number } };
const condition = (name: string, type: string) => status(name).conditions?.find((c) => c.type === type);
const configMap = (name: string) => {
  const r = kubectl(["get", "configmap", name, "-n", ns, "-o", "json"]);
  return r.code === 0 ? (JSON.parse(r.stdout) as { data: Record<string, string> }) : undefined;
};

test("High 1: an alias write that fails is completed once S3 heals; the ConfigMap and status.promoted follow", async () => {
  const data = await createBucket("trust2-data");
  const runs = await createBucket("trust2-runs");
  const models = await createBucket("trust2-models");
  await seed(runs, "alias", 0, { recall: 0.9, model: true });
  const heal = proxy.add({ match: new RegExp(`^PUT /${models}/clip/production\\.json$`), fault: "SlowDown" });
  const m = localRunManifest({
    namespace: ns,
    name: "alias",
    dataBucket: data,
    runsBucket: runs,
    spec: { promotion: { mode: "Auto", s3: { bucket: models, prefix: "clip/" }, configMapName: "alias-model" } },
  });
  m.spec.source.s3.endpoint = proxy.endpoint;
  m.spec.artifacts.s3.prefix = "alias/";
  create(m);
  await waitFor("v1 made", async () => (await exists(models, "clip/v1/version.json")) || undefined, 60_000, 500);
  // The alias PUT keeps failing: several passes go by with v1 complete and no alias.
  await waitFor(
    "alias writes refused",
    () => ((proxy.injected.get("SlowDown") ?? 0) >= 8 ? true : undefined),
    60_000,
    500,
  );
  assert.equal(await exists(models, "clip/production.json"), false);
  heal();
  const pointer = await waitFor(
    "alias on v1",
    async () => ((await readJson(models, "clip/production.json"))?.version === 1 ? true : undefined),
    60_000,
    500,
  );
  assert.ok(pointer);
  await waitFor(
    "ConfigMap on v1",
    () => (configMap("alias-model")?.data.version === "1" ? true : undefined),
    60_000,
    500,
  );
  await waitFor("status.promoted v1", () => (status("alias").promoted?.version === 1 ? true : undefined), 60_000, 500);
  assert.equal(runRounds(ns, "alias")[0]?.phase, "Promoted");
  assert.equal(condition("alias", "Ready")?.status, "True");
});

test("High 2: a slice folder answering 503 for many polls is not skipped; the slice after it waits, and trains after it", async () => {
  const data = await createBucket("trust2-data");
  const runs = await createBucket("trust2-runs");
  for (const id of ["2016", "2017", "2018"]) await putSlice(s3Client(), data, "slices/", { id, shards: [16] });
  await seed(runs, "blip", 0, { slices: ["2016"], recall: 0.5 });
  const heal = proxy.add({ match: new RegExp(`^GET /${data}/slices/2017/manifest\\.json$`), fault: "SlowDown" });
  const m = localRunManifest({ namespace: ns, name: "blip", dataBucket: data, runsBucket: runs });
  m.spec.source.s3.endpoint = proxy.endpoint;
  m.spec.artifacts.s3.prefix = "blip/";
  const before = proxy.injected.get("SlowDown") ?? 0;
  create(m);
  await waitFor("round 0 Passed", () => runRounds(ns, "blip")[0]?.phase === "Passed" || undefined, 60_000, 500);
  // pollInterval 2s: wait for well over the 5 polls after which 2017 used to be given up.
  await waitFor(
    "2017 refused over many polls",
    () => ((proxy.injected.get("SlowDown") ?? 0) - before >= 30 ? true : undefined),
    120_000,
    500,
  );
  assert.deepEqual(
    runRounds(ns, "blip").map((r) => r.index),
    [0],
    "no round on 2018 while 2017 cannot be read",
  );
  const slices = (getRun(ns, "blip")!.status as { slices?: { invalid?: unknown[] } }).slices;
  assert.equal(slices?.invalid, undefined, "2017 is not an invalid slice");
  const degraded = condition("blip", "Degraded")!;
  assert.equal(degraded.status, "True");
  assert.match(degraded.message, new RegExp(`slice 2017 .*s3://${data}/slices/2017/manifest\\.json`));
  heal();
  const round = await waitFor("a round on 2017", () => runRounds(ns, "blip").find((r) => r.index === 1), 60_000, 500);
  assert.deepEqual(round.slices, ["2017"], "2017 trains next, in order");
  assert.equal(await exists(runs, "blip/rounds/0002/plan.json"), false);
});

const events = (name: string) =>
  JSON.parse(kubectlOk(["get", "events", "-n", ns, "--field-selector", `involvedObject.name=${name}`, "-o", "json"]))
    .items as { type: string; reason: string; message: string }[];

test("High 3: round 0's eval.json and verdict.json copied into round 1, and encoders swapped after evaluation, are refused: Warning, evaluated again, never promoted", async () => {
  const data = await createBucket("trust2-data");
  const runs = await createBucket("trust2-runs");
  const models = await createBucket("trust2-models");
  await seed(runs, "bound", 0, { recall: 0.9, model: true });
  await seed(runs, "bound", 1, { model: true });
  for (const file of ["eval.json"]) {
    const body = await s3Client().send(new GetObjectCommand({ Bucket: runs, Key: `bound/rounds/0000/${file}` }));
    await putObject(s3Client(), runs, `bound/rounds/0001/${file}`, await body.Body!.transformToByteArray());
  }
  // verdict.json of round 0 as the operator would write it, copied beside the copied eval.json.
  const verdict = {
    evaluatedAt: "2026-01-01T00:00:00Z",
    judgedAt: "2026-01-01T00:00:00Z",
    gates: [],
    verdict: { passed: true, metrics: { "retrieval.id.meanRecallAt1": 0.9 }, gates: [], message: "no gates" },
  };
  await putObject(s3Client(), runs, "bound/rounds/0001/verdict.json", JSON.stringify(verdict));
  const m = localRunManifest({
    namespace: ns,
    name: "bound",
    dataBucket: data,
    runsBucket: runs,
    spec: { promotion: { mode: "Auto", s3: { bucket: models, prefix: "clip/" } } },
  });
  m.spec.artifacts.s3.prefix = "bound/";
  create(m);
  await waitFor("round 0 Promoted", () => runRounds(ns, "bound")[0]?.phase === "Promoted" || undefined, 60_000, 500);
  // Round 1 is evaluated again (in-process here: the seeded encoders are no ONNX, so that fails).
  const fresh = await waitFor(
    "round 1 evaluated again",
    async () => {
      const ev = await readJson(runs, "bound/rounds/0001/eval.json");
      return ev?.round === 1 ? ev : undefined;
    },
    90_000,
    500,
  );
  assert.equal(fresh.roundUri, `s3://${runs}/bound/rounds/0001/`);
  await waitFor("round 1 judged", () => runRounds(ns, "bound")[1]?.phase === "Rejected" || undefined, 60_000, 500);
  assert.equal(await exists(models, "clip/v2/version.json"), false, "round 1 was never promoted");
  assert.equal((await readJson(models, "clip/production.json"))?.version, 1);
  assert.ok(
    events("bound").some((e) => e.type === "Warning" && e.reason === "EvaluationMismatch" && /round 1/.test(e.message)),
  );
});

test("High 3: encoders that are not the bytes eval.json scored are evaluated again, never promoted", async () => {
  const data = await createBucket("trust2-data");
  const runs = await createBucket("trust2-runs");
  const models = await createBucket("trust2-models");
  await seed(runs, "swapped", 0, {
    recall: 0.9,
    model: true,
    scored: { image: "evaluated image", text: "evaluated text" },
  });
  const m = localRunManifest({
    namespace: ns,
    name: "swapped",
    dataBucket: data,
    runsBucket: runs,
    spec: { promotion: { mode: "Auto", s3: { bucket: models, prefix: "clip/" } } },
  });
  m.spec.artifacts.s3.prefix = "swapped/";
  create(m);
  await waitFor("round 0 judged", () => runRounds(ns, "swapped")[0]?.phase === "Rejected" || undefined, 90_000, 500);
  assert.equal(await exists(models, "clip/v1/version.json"), false);
  assert.ok(events("swapped").some((e) => e.type === "Warning" && e.reason === "EvaluationMismatch"));
  assert.equal((await readJson(runs, "swapped/rounds/0000/eval.json"))?.status, "Failed", "evaluated again");
});

const trainerJobs = (name: string) =>
  JSON.parse(kubectlOk(["get", "jobs", "-n", ns, "-l", `ticclip.dev/run=${name}`, "-o", "json"])).items as unknown[];

test("High 4: a run without credentialsSecretRef is Stalled naming the field (the operator's identity is opt-in); nothing is read or written", async () => {
  const data = await createBucket("trust2-data");
  const runs = await createBucket("trust2-runs");
  await putSlice(s3Client(), data, "slices/", { id: "2016", shards: [16] });
  const m = localRunManifest({ namespace: ns, name: "nocreds", dataBucket: data, runsBucket: runs });
  delete (m.spec.source.s3 as { credentialsSecretRef?: unknown }).credentialsSecretRef;
  create(m);
  const c = await waitFor(
    "CredentialsSecretRequired",
    () =>
      condition("nocreds", "Stalled")?.reason === "CredentialsSecretRequired"
        ? condition("nocreds", "Stalled")
        : undefined,
    60_000,
    500,
  );
  assert.equal(c.status, "True");
  assert.match(c.message, /^spec\.source\.s3\.credentialsSecretRef: /);
  await new Promise((r) => setTimeout(r, 3_000));
  assert.deepEqual(trainerJobs("nocreds"), []);
  assert.equal(await exists(runs, "nocreds/rounds/0000/plan.json"), false);
});

test("High 4: a second run on the same promotion prefix is refused (PromotionPrefixShared) and never moves the first run's alias", async () => {
  const data = await createBucket("trust2-data");
  const runs = await createBucket("trust2-runs");
  const models = await createBucket("trust2-models");
  await seed(runs, "owner", 0, { recall: 0.5, model: true });
  await seed(runs, "intruder", 0, { recall: 0.9, model: true });
  const manifest = (name: string) => {
    const m = localRunManifest({
      namespace: ns,
      name,
      dataBucket: data,
      runsBucket: runs,
      spec: { promotion: { mode: "Auto", s3: { bucket: models, prefix: "shared/" } } },
    });
    m.spec.artifacts.s3.prefix = `${name}/`;
    return m;
  };
  create(manifest("owner"));
  await waitFor("owner promoted", () => runRounds(ns, "owner")[0]?.phase === "Promoted" || undefined, 60_000, 500);
  const before = await readJson(models, "shared/production.json");
  create(manifest("intruder"));
  const c = await waitFor(
    "PromotionPrefixShared",
    () =>
      condition("intruder", "Stalled")?.reason === "PromotionPrefixShared"
        ? condition("intruder", "Stalled")
        : undefined,
    60_000,
    500,
  );
  assert.match(c.message, new RegExp(`^spec\\.promotion\\.s3: s3://${models}/shared/v1/ was made by run ${ns}/owner`));
  await new Promise((r) => setTimeout(r, 3_000));
  assert.deepEqual(await readJson(models, "shared/production.json"), before, "the owner's alias is untouched");
  assert.equal(await exists(models, "shared/v2/version.json"), false);
});
