// Issue 10: the operator never promotes what was not evaluated, never retries a failing slice in a
// loop, never hangs on S3, never takes over what it does not own. Against the real kube-apiserver
// and Job controller, MinIO and the operator as a process; rounds start from folders already
// trained (seeded), and trainer pods that must fail run a command that exits 1.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { createNamespace, getRun, kubectl, kubectlOk, waitFor } from "../support/cluster.ts";
import {
  createBucket,
  createS3Secret,
  localRunManifest,
  runRounds,
  startExecutor,
  startOperator,
  type Proc,
  testNamespace,
} from "../support/local-run.ts";
import { roundFiles, type SeedOptions } from "../support/rounds.ts";
import { putObject, s3Client } from "../support/s3.ts";
import { putSlice } from "./data/slices.ts";

const FAILING_IMAGE = "ticclip-trainer:exits-1";
const NO_JOBS_POLICY = {
  apiVersion: "v1",
  kind: "List",
  items: [
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicy",
      metadata: { name: "ticclip-test-no-jobs" },
      spec: {
        failurePolicy: "Fail",
        matchConstraints: {
          resourceRules: [{ apiGroups: ["batch"], apiVersions: ["v1"], operations: ["CREATE"], resources: ["jobs"] }],
        },
        validations: [{ expression: "false", message: "Jobs are not allowed in this namespace by policy" }],
      },
    },
    {
      apiVersion: "admissionregistration.k8s.io/v1",
      kind: "ValidatingAdmissionPolicyBinding",
      metadata: { name: "ticclip-test-no-jobs" },
      spec: {
        policyName: "ticclip-test-no-jobs",
        validationActions: ["Deny"],
        matchResources: { namespaceSelector: { matchLabels: { "ticclip-test/no-jobs": "true" } } },
      },
    },
  ],
};
let ns = "";
let quotaNs = "";
let executor: Proc;
let operator: Proc;

before(() => {
  ns = testNamespace("trust");
  // A namespace where an admission policy refuses every Job (as a policy engine or quota would).
  quotaNs = createNamespace("trust-refused");
  createS3Secret(quotaNs);
  kubectlOk(["apply", "-f", "-"], JSON.stringify(NO_JOBS_POLICY));
  kubectlOk(["label", "namespace", quotaNs, "ticclip-test/no-jobs=true"]);
  executor = startExecutor([ns], { [FAILING_IMAGE]: { commandMap: { python: "/bin/false" } } });
  operator = startOperator(
    [ns, quotaNs],
    ["--s3-timeout-seconds", "3", "--trainer-architectures", "ticclip-tiny,ViT-B-32"],
  );
});
after(async () => {
  await operator?.stop();
  await executor?.stop();
  // Runs left in the namespace that refuses Jobs would be retried by later tests' operators.
  if (quotaNs) kubectl(["delete", "namespace", quotaNs, "--wait=false"]);
});

/** A round already trained, by the run named like the prefix (a round folder belongs to the run in its plan). */
async function seed(bucket: string, prefix: string, index: number, o: SeedOptions): Promise<void> {
  const run = { namespace: ns, name: prefix.slice(0, -1) };
  for (const [key, body] of roundFiles(bucket, prefix, index, { run, ...o }))
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

const create = (manifest: unknown) => kubectlOk(["create", "-f", "-"], JSON.stringify(manifest));
const patchSpec = (name: string, spec: unknown) =>
  kubectlOk(["patch", "ccr", name, "-n", ns, "--type", "merge", "-p", JSON.stringify({ spec })]);
const condition = (name: string, type: string) =>
  (
    (getRun(ns, name)?.status as { conditions?: { type: string; status: string; reason: string; message: string }[] })
      ?.conditions ?? []
  ).find((c) => c.type === type);
const events = (name: string) =>
  JSON.parse(kubectlOk(["get", "events", "-n", ns, "--field-selector", `involvedObject.name=${name}`, "-o", "json"]))
    .items as { type: string; reason: string; message: string }[];
const trainerJobs = (name: string) =>
  (
    JSON.parse(
      kubectlOk(["get", "jobs", "-n", ns, "-l", `ticclip.dev/run=${name},ticclip.dev/component=trainer`, "-o", "json"]),
    ).items as { metadata: { name: string } }[]
  )
    .map((j) => j.metadata.name)
    .sort();

test("item 1: round 0 of a new artifacts prefix is evaluated, not promoted on the metrics of the old round 0", async () => {
  const data = await createBucket("trust-data");
  const runs = await createBucket("trust-runs");
  const models = await createBucket("trust-models");
  await seed(runs, "exp1/", 0, { recall: 0.9, model: true, run: { namespace: ns, name: "stale" } });
  const m = localRunManifest({ namespace: ns, name: "stale", dataBucket: data, runsBucket: runs });
  m.spec.artifacts.s3.prefix = "exp1/";
  create(m);
  await waitFor("exp1 round 0 Passed", () => runRounds(ns, "stale")[0]?.phase === "Passed" || undefined, 60_000, 500);
  await seed(runs, "exp2/", 0, { model: true, run: { namespace: ns, name: "stale" } });
  patchSpec("stale", {
    artifacts: { s3: { bucket: runs, prefix: "exp2/" } },
    promotion: { mode: "Auto", s3: { bucket: models, prefix: "clip/" } },
  });
  // The operator has no evaluator image: it scores in-process, which fails on the seeded dummy model.
  await waitFor(
    "exp2 round 0 evaluated",
    async () => (await exists(runs, "exp2/rounds/0000/eval.json")) || undefined,
    90_000,
    500,
  );
  await waitFor("exp2 round 0 judged", () => runRounds(ns, "stale")[0]?.phase === "Rejected" || undefined, 60_000, 500);
  assert.equal(await exists(models, "clip/v1/version.json"), false, "nothing was promoted");
});

test("item 2: EverySlice retries a failing slice only when something new arrived, gives it up after 3 rounds, then trains the next", async () => {
  const data = await createBucket("trust-data");
  const runs = await createBucket("trust-runs");
  await seed(runs, "loop/", 0, { slices: ["2016"], recall: 0.5 });
  for (const id of ["2016", "2017", "2018"]) await putSlice(s3Client(), data, "slices/", { id, shards: [16] });
  const m = localRunManifest({
    namespace: ns,
    name: "loop",
    dataBucket: data,
    runsBucket: runs,
    spec: { trainer: { image: FAILING_IMAGE, backoffLimit: 0 } },
  });
  m.spec.artifacts.s3.prefix = "loop/";
  create(m);
  const failed = (n: number) => runRounds(ns, "loop").filter((r) => r.phase === "Failed").length >= n || undefined;
  await waitFor("round 1 on 2017 failed", () => failed(1), 120_000, 500);
  // Nothing new arrived: no new round in the next polls (pollInterval 2s).
  await new Promise((r) => setTimeout(r, 8_000));
  assert.deepEqual(trainerJobs("loop"), ["loop-r0001-train"], "no retry without a new slice");
  assert.equal(condition("loop", "Ready")?.reason, "RoundFailed");
  // Item 5: no round is active, and status says so.
  assert.equal((getRun(ns, "loop")!.status as { currentRound?: unknown }).currentRound, undefined);
  for (const [i, id] of ["2019", "2020"].entries()) {
    await putSlice(s3Client(), data, "slices/", { id, shards: [16] });
    await waitFor(`retry ${i + 2} of 2017 failed`, () => failed(i + 2), 120_000, 500);
  }
  const rounds = await waitFor(
    "round 4 planned on 2018",
    () => runRounds(ns, "loop").find((r) => r.index === 4),
    60_000,
    500,
  );
  assert.deepEqual(rounds.slices, ["2018"]);
  assert.deepEqual(
    runRounds(ns, "loop")
      .slice(1, 4)
      .map((r) => [r.index, r.slices, r.phase]),
    [
      [1, ["2017"], "Failed"],
      [2, ["2017"], "Failed"],
      [3, ["2017"], "Failed"],
    ],
  );
  const slices = (
    getRun(ns, "loop")!.status as { slices: { failed?: { id: string; attempts: number; reason: string }[] } }
  ).slices;
  assert.deepEqual(
    slices.failed?.map((f) => [f.id, f.attempts]),
    [["2017", 3]],
  );
  assert.ok(
    events("loop").some((e) => e.type === "Warning" && e.reason === "SliceFailed" && e.message.includes("2017")),
  );
  // Item 7: what each finished Job spent is kept beside its round.
  assert.ok(await exists(runs, "loop/rounds/0001/compute.json"), "compute.json of a finished Job");
});

test("item 3: an S3 endpoint that accepts connections and never answers makes its run Degraded; other runs go on", async () => {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => void sockets.push(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const port = (server.address() as net.AddressInfo).port;
    const data = await createBucket("trust-data");
    const runs = await createBucket("trust-runs");
    const hung = localRunManifest({ namespace: ns, name: "hung", dataBucket: data, runsBucket: runs });
    hung.spec.source.s3.endpoint = `http://127.0.0.1:${port}`;
    create(hung);
    const degraded = await waitFor(
      "hung run Degraded",
      () => (condition("hung", "Degraded")?.status === "True" ? condition("hung", "Degraded") : undefined),
      60_000,
      500,
    );
    assert.equal(degraded.reason, "S3Timeout", degraded.message);
    // A healthy run created after it is still reconciled.
    await seed(runs, "fine/", 0, { recall: 0.5 });
    const fine = localRunManifest({ namespace: ns, name: "fine", dataBucket: data, runsBucket: runs });
    fine.spec.artifacts.s3.prefix = "fine/";
    create(fine);
    await waitFor("other run reconciled", () => runRounds(ns, "fine")[0]?.phase === "Passed" || undefined, 60_000, 500);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  }
});

/**
 * S3 on loopback that answers 403 AccessDenied for keys matching `denied` and forwards everything else to the
 * local MinIO unchanged (Host header included, so SigV4 signatures still verify): one unreadable object,
 * as a bucket policy or a broken ACL would make it, in an otherwise healthy bucket.
 */
async function denyingProxy(
  denied: RegExp,
): Promise<{ endpoint: string; denials: () => number; close: () => Promise<void> }> {
  const upstream = new URL(process.env.S3_ENDPOINT!);
  let denials = 0;
  const server = http.createServer((req, res) => {
    if (denied.test(new URL(req.url ?? "/", "http://x").pathname)) {
      denials++;
      req.resume();
      res.writeHead(403, { "content-type": "application/xml" });
      res.end(
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>',
      );
      return;
    }
    const fwd = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    fwd.on("error", () => res.destroy());
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    denials: () => denials,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

test("item 6: a slice folder whose manifest.json is refused (403) becomes an invalid slice; the next slice trains", async () => {
  const data = await createBucket("trust-data");
  const runs = await createBucket("trust-runs");
  for (const id of ["2016", "2017"]) await putSlice(s3Client(), data, "slices/", { id, shards: [16] });
  const proxy = await denyingProxy(/\/slices\/2016\/manifest\.json$/);
  try {
    const m = localRunManifest({
      namespace: ns,
      name: "denied",
      dataBucket: data,
      runsBucket: runs,
      spec: { trainer: { image: FAILING_IMAGE, backoffLimit: 0 } },
    });
    m.spec.source.s3.endpoint = proxy.endpoint;
    m.spec.artifacts.s3.prefix = "denied/";
    create(m);
    type Invalid = { id: string; reason: string };
    const invalid = await waitFor(
      "2016 listed invalid",
      () =>
        ((getRun(ns, "denied")?.status as { slices?: { invalid?: Invalid[] } })?.slices?.invalid ?? []).find(
          (i) => i.id === "2016",
        ),
      90_000,
      500,
    );
    assert.match(invalid.reason, /^Unreadable: 5 polls in a row: S3AccessDenied: .*slices\/2016\/manifest.json/);
    assert.ok(proxy.denials() >= 5, `the folder was retried over several polls (${proxy.denials()} denials)`);
    assert.ok(
      events("denied").some(
        (e) => e.reason === "InvalidSlice" && /2016/.test(e.message) && /AccessDenied|denied/i.test(e.message),
      ),
      "a Warning names the slice and the S3 error",
    );
    // The unreadable folder no longer holds the run: the next slice gets its round and Job.
    const round = await waitFor(
      "a round on 2017",
      () => runRounds(ns, "denied").find((r) => r.slices.includes("2017")),
      60_000,
      500,
    );
    assert.deepEqual(round.slices, ["2017"]);
    await waitFor("its trainer Job", () => trainerJobs("denied").length > 0 || undefined, 30_000, 500);
  } finally {
    await proxy.close();
  }
});

test("item 4: a model ConfigMap owned by someone else is refused (Warning, condition) and left untouched", async () => {
  const data = await createBucket("trust-data");
  const runs = await createBucket("trust-runs");
  const models = await createBucket("trust-models");
  kubectlOk(["create", "configmap", "their-model", "-n", ns, "--from-literal=owner=someone-else"]);
  await seed(runs, "cm/", 0, { recall: 0.9, model: true });
  const m = localRunManifest({
    namespace: ns,
    name: "cm",
    dataBucket: data,
    runsBucket: runs,
    spec: { promotion: { mode: "Auto", s3: { bucket: models, prefix: "clip/" }, configMapName: "their-model" } },
  });
  m.spec.artifacts.s3.prefix = "cm/";
  create(m);
  const c = await waitFor(
    "ConfigMapNotOwned",
    () => (condition("cm", "Degraded")?.reason === "ConfigMapNotOwned" ? condition("cm", "Degraded") : undefined),
    60_000,
    500,
  );
  assert.match(c.message, /spec\.promotion\.configMapName/);
  assert.ok(events("cm").some((e) => e.type === "Warning" && e.reason === "ConfigMapNotOwned"));
  const cm = JSON.parse(kubectlOk(["get", "configmap", "their-model", "-n", ns, "-o", "json"]));
  assert.deepEqual(cm.data, { owner: "someone-else" });
  assert.equal(cm.metadata.ownerReferences, undefined, "not handed to the run's garbage collection");
});

// Names with dots or (multi-node) a leading digit are refused at admission now (docs/admission.md);
// the operator still derives DNS labels for runs stored before that rule (unit-tested in
// test/unit/training/job.test.ts). Here: a multi-node run gets its Service and Indexed Job.
test("item 13/14: a multi-node run gets its rendezvous Service and Indexed Job, pods without a token", async () => {
  const data = await createBucket("trust-data");
  const runs = await createBucket("trust-runs");
  await putSlice(s3Client(), data, "slices/", { id: "2016", shards: [16] });
  const m = localRunManifest({
    namespace: ns,
    name: "multi",
    dataBucket: data,
    runsBucket: runs,
    spec: { trainer: { image: "not-run:1", nodes: 2, gpusPerNode: 1 } },
  });
  m.spec.artifacts.s3.prefix = "multi/";
  create(m);
  const jobs = await waitFor(
    "Job created",
    () => {
      const items = JSON.parse(kubectlOk(["get", "jobs", "-n", ns, "-o", "json"])).items as {
        metadata: { name: string; ownerReferences: { name: string }[] };
        spec: {
          completionMode?: string;
          template: { spec: { subdomain?: string; automountServiceAccountToken?: boolean } };
        };
      }[];
      const mine = items.filter((j) => j.metadata.ownerReferences?.[0]?.name === "multi");
      return mine.length ? mine : undefined;
    },
    60_000,
    500,
  );
  const job = jobs[0]!;
  assert.equal(job.spec.completionMode, "Indexed");
  const svc = JSON.parse(kubectlOk(["get", "service", job.spec.template.spec.subdomain!, "-n", ns, "-o", "json"]));
  assert.match(svc.metadata.name, /^[a-z]([-a-z0-9]*[a-z0-9])?$/);
  // Item 14: no service-account token in trainer pods unless asked.
  assert.equal(job.spec.template.spec.automountServiceAccountToken, false);
  assert.notEqual(condition("multi", "Degraded")?.reason, "JobCreateFailed");
});

test("item 13: a Job the API server refuses is a Degraded condition and a Warning naming the cause", async () => {
  const data = await createBucket("trust-data");
  const runs = await createBucket("trust-runs");
  await putSlice(s3Client(), data, "slices/", { id: "2016", shards: [16] });
  const m = localRunManifest({ namespace: quotaNs, name: "quota", dataBucket: data, runsBucket: runs });
  create(m);
  const cond = () =>
    (
      (
        getRun(quotaNs, "quota")?.status as {
          conditions?: { type: string; status: string; reason: string; message: string }[];
        }
      )?.conditions ?? []
    ).find((c) => c.type === "Degraded");
  const c = await waitFor(
    "JobCreateFailed",
    () => (cond()?.reason === "JobCreateFailed" ? cond() : undefined),
    60_000,
    500,
  );
  assert.match(c!.message, /not allowed in this namespace by policy/);
  const ev = JSON.parse(
    kubectlOk(["get", "events", "-n", quotaNs, "--field-selector", "involvedObject.name=quota", "-o", "json"]),
  ).items as { type: string; reason: string; message: string }[];
  assert.ok(
    ev.some((e) => e.type === "Warning" && e.reason === "JobCreateFailed" && /by policy/.test(e.message)),
    JSON.stringify(ev.map((e) => e.reason)),
  );
});

test("item 11: a truncated plan.json is surfaced with its key and waited on; nothing is overwritten or started", async () => {
  const data = await createBucket("trust-data");
  const runs = await createBucket("trust-runs");
  await putSlice(s3Client(), data, "slices/", { id: "2016", shards: [16] });
  const truncated = '{"schemaVersion": 1, "run": {';
  await putObject(s3Client(), runs, "trunc/rounds/0000/plan.json", truncated);
  const m = localRunManifest({ namespace: ns, name: "trunc", dataBucket: data, runsBucket: runs });
  m.spec.artifacts.s3.prefix = "trunc/";
  create(m);
  const c = await waitFor(
    "RoundPlanUnreadable",
    () =>
      condition("trunc", "Degraded")?.reason === "RoundPlanUnreadable" ? condition("trunc", "Degraded") : undefined,
    60_000,
    500,
  );
  assert.match(c.message, new RegExp(`s3://${runs}/trunc/rounds/0000/plan.json`));
  await new Promise((r) => setTimeout(r, 3_000));
  assert.deepEqual(trainerJobs("trunc"), []);
  assert.equal(await exists(runs, "trunc/rounds/0001/plan.json"), false, "the index is not skipped or reused");
});

test("item 7: a deleted credentials Secret keeps the last known rounds and compute while Degraded", async () => {
  const data = await createBucket("trust-data");
  const runs = await createBucket("trust-runs");
  await seed(runs, "hist/", 0, { recall: 0.5 });
  createS3Secret(ns, "hist-creds");
  const m = localRunManifest({ namespace: ns, name: "hist", dataBucket: data, runsBucket: runs });
  m.spec.artifacts.s3.prefix = "hist/";
  m.spec.source.s3.credentialsSecretRef = { name: "hist-creds" };
  create(m);
  await waitFor("round 0 Passed", () => runRounds(ns, "hist")[0]?.phase === "Passed" || undefined, 60_000, 500);
  const before = getRun(ns, "hist")!.status as { rounds: unknown[]; compute: unknown };
  kubectlOk(["delete", "secret", "hist-creds", "-n", ns]);
  await waitFor(
    "SecretMissing",
    () => condition("hist", "Degraded")?.reason === "SecretMissing" || undefined,
    60_000,
    500,
  );
  const after = getRun(ns, "hist")!.status as { rounds: unknown[]; compute: unknown };
  assert.deepEqual(after.rounds, before.rounds);
  assert.deepEqual(after.compute, before.compute);
});

test("item 9: rejected rounds older than historyLimit are not reported again on every poll", async () => {
  const data = await createBucket("trust-data");
  const runs = await createBucket("trust-runs");
  for (const i of [0, 1, 2]) await seed(runs, "storm/", i, { recall: 0.1 });
  const m = localRunManifest({
    namespace: ns,
    name: "storm",
    dataBucket: data,
    runsBucket: runs,
    spec: { historyLimit: 1, evaluation: { gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0.3 }] } },
  });
  m.spec.artifacts.s3.prefix = "storm/";
  create(m);
  await waitFor("rounds judged", () => runRounds(ns, "storm")[0]?.phase === "Rejected" || undefined, 60_000, 500);
  const counts = () =>
    events("storm")
      .filter((e) => e.reason === "RoundRejected")
      .map((e) => (e as { count?: number }).count ?? 1);
  const first = counts();
  // pollInterval is 2 s: several polls pass.
  await new Promise((r) => setTimeout(r, 8_000));
  assert.deepEqual(counts(), first, "no RoundRejected repeated");
  assert.equal(first.length, 3, "each rejection reported once");
});

// Issue 13 item 6: runtime guards for what admission cannot know. Each run is Stalled within a
// reconcile with a reason and a message naming the field; no Job is created and nothing written.
const guardCases: {
  name: string;
  secret?: Record<string, string>;
  bucket?: string;
  architecture?: string;
  reason: string;
  field: RegExp;
}[] = [
  {
    name: "guard-arch",
    architecture: "ViT-Nope-99",
    reason: "ArchitectureNotShipped",
    field: /^spec\.model\.architecture: ViT-Nope-99/,
  },
  {
    name: "guard-keys",
    secret: { AWS_ACCESS_KEY_ID: "ticclip" },
    reason: "SecretKeyMissing",
    field: /^spec\.source\.s3\.credentialsSecretRef: .*AWS_SECRET_ACCESS_KEY/,
  },
  {
    name: "guard-denied",
    secret: { AWS_ACCESS_KEY_ID: "ticclip", AWS_SECRET_ACCESS_KEY: "not-the-key" },
    reason: "S3InvalidCredentials",
    field: /^spec\.(source|artifacts)\.s3/,
  },
  {
    name: "guard-bucket",
    bucket: "no-such-bucket-ticclip",
    reason: "S3NoSuchBucket",
    field: /^spec\.(source|artifacts)\.s3/,
  },
];
for (const g of guardCases) {
  test(`issue 13 guard: ${g.reason} stalls the run naming the field; no Job, nothing written`, async () => {
    const data = g.bucket ?? (await createBucket("trust-data"));
    const runs = await createBucket("trust-runs");
    if (!g.bucket) await putSlice(s3Client(), data, "slices/", { id: "2016", shards: [16] });
    const m = localRunManifest({
      namespace: ns,
      name: g.name,
      dataBucket: data,
      runsBucket: runs,
      spec: g.architecture ? { model: { architecture: g.architecture } } : {},
    });
    if (g.secret) {
      const args = Object.entries(g.secret).map(([k, v]) => `--from-literal=${k}=${v}`);
      kubectlOk(["create", "secret", "generic", `${g.name}-creds`, "-n", ns, ...args]);
      m.spec.source.s3.credentialsSecretRef = { name: `${g.name}-creds` };
    }
    create(m);
    const c = await waitFor(
      g.reason,
      () => (condition(g.name, "Stalled")?.reason === g.reason ? condition(g.name, "Stalled") : undefined),
      60_000,
      500,
    );
    assert.equal(c.status, "True");
    assert.match(c.message, g.field);
    assert.deepEqual(trainerJobs(g.name), []);
    assert.equal(await exists(runs, `${g.name}/rounds/0000/plan.json`), false);
  });
}

test("item 8: a promoted round stays Promoted when its gate is tightened later; its verdict is recorded", async () => {
  const data = await createBucket("trust-data");
  const runs = await createBucket("trust-runs");
  const models = await createBucket("trust-models");
  await seed(runs, "judge/", 0, { recall: 0.5, model: true });
  const gates = (value: number) => ({ gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value }] });
  const m = localRunManifest({
    namespace: ns,
    name: "judge",
    dataBucket: data,
    runsBucket: runs,
    spec: { evaluation: gates(0.3), promotion: { mode: "Auto", s3: { bucket: models, prefix: "clip/" } } },
  });
  m.spec.artifacts.s3.prefix = "judge/";
  create(m);
  await waitFor("round 0 Promoted", () => runRounds(ns, "judge")[0]?.phase === "Promoted" || undefined, 60_000, 500);
  assert.ok(await exists(runs, "judge/rounds/0000/verdict.json"));
  patchSpec("judge", { evaluation: gates(0.9) });
  await waitFor(
    "generation observed",
    () => (getRun(ns, "judge")!.status as { observedGeneration?: number }).observedGeneration === 2 || undefined,
    30_000,
    500,
  );
  await new Promise((r) => setTimeout(r, 4_000));
  assert.equal(runRounds(ns, "judge")[0]?.phase, "Promoted");
});

test("item 10: SIGTERM with reconciles queued releases the Lease (a standby takes over at once)", async () => {
  const shutdownNs = createNamespace("trust-shutdown");
  createS3Secret(shutdownNs);
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => void sockets.push(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  try {
    const port = (server.address() as net.AddressInfo).port;
    // Runs whose S3 never answers keep the single worker busy, so keys stay queued.
    for (const i of [0, 1, 2, 3]) {
      const m = localRunManifest({
        namespace: shutdownNs,
        name: `slow-${i}`,
        dataBucket: "slow-data",
        runsBucket: "slow-runs",
      });
      m.spec.source.s3.endpoint = `http://127.0.0.1:${port}`;
      kubectlOk(["create", "-f", "-"], JSON.stringify(m));
    }
    const op = startOperator(
      [shutdownNs],
      ["--concurrency", "1", "--s3-timeout-seconds", "5", "--identity", "shutdown-test"],
    );
    const holder = () =>
      JSON.parse(kubectlOk(["get", "lease", "continual-clip-operator", "-n", shutdownNs, "-o", "json"])).spec
        ?.holderIdentity as string | undefined;
    await waitFor(
      "leading",
      () => {
        try {
          return holder() === "shutdown-test" || undefined;
        } catch {
          return undefined;
        }
      },
      30_000,
      300,
    );
    await new Promise((r) => setTimeout(r, 1_500));
    await op.stop("SIGTERM");
    assert.equal(holder(), undefined, "the Lease is released, not left to expire");
    const log = readFileSync(op.logFile, "utf8");
    assert.match(log, /leader lease released/);
    assert.match(log, /operator stopped/, "a graceful stop, not the forced exit of the shutdown timer");
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  }
});

test("item 3: a reconcile stuck past its deadline fails /healthz until it ends", async () => {
  const healthNs = createNamespace("trust-health");
  createS3Secret(healthNs);
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => void sockets.push(s));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const op = startOperator(
    [healthNs],
    ["--reconcile-deadline-seconds", "1", "--s3-timeout-seconds", "60", "--identity", "health-test"],
  );
  try {
    const port = (server.address() as net.AddressInfo).port;
    const metricsPort = await waitFor(
      "metrics address",
      () => {
        const line = readFileSync(op.logFile, "utf8")
          .split("\n")
          .find((l) => l.includes('"message":"metrics listening"'));
        return line ? (JSON.parse(line) as { address: { port: number } }).address.port : undefined;
      },
      30_000,
      200,
    );
    const healthz = async () => (await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).status;
    assert.equal(await healthz(), 200);
    const m = localRunManifest({
      namespace: healthNs,
      name: "wedged",
      dataBucket: "wedged-data",
      runsBucket: "wedged-runs",
    });
    m.spec.source.s3.endpoint = `http://127.0.0.1:${port}`;
    kubectlOk(["create", "-f", "-"], JSON.stringify(m));
    await waitFor(
      "/healthz fails while the reconcile is stuck",
      async () => ((await healthz()) === 503 ? true : undefined),
      30_000,
      300,
    );
    // The endpoint goes away: the stuck calls fail, the reconcile ends, /healthz recovers.
    for (const s of sockets) s.destroy();
    server.close();
    await waitFor("/healthz recovers", async () => ((await healthz()) === 200 ? true : undefined), 60_000, 300);
  } finally {
    await op.stop();
    for (const s of sockets) s.destroy();
    server.close();
  }
});

test("item 13: a Job that only copies a run's labels is not taken for the run's own", async () => {
  const data = await createBucket("trust-data");
  const runs = await createBucket("trust-runs");
  await putSlice(s3Client(), data, "slices/", { id: "2016", shards: [16] });
  await seed(runs, "owned/", 0, { trained: false });
  // Same labels as round 0's trainer Job, no ownerReference; its pod fails at once.
  const labels = { "ticclip.dev/run": "owned", "ticclip.dev/round": "0000", "ticclip.dev/component": "trainer" };
  const impostor = {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name: "impostor", namespace: ns, labels },
    spec: {
      backoffLimit: 0,
      template: {
        metadata: { labels },
        spec: { restartPolicy: "Never", containers: [{ name: "trainer", image: FAILING_IMAGE, command: ["python"] }] },
      },
    },
  };
  kubectlOk(["create", "-f", "-"], JSON.stringify(impostor));
  await waitFor(
    "impostor failed",
    () => {
      const j = JSON.parse(kubectlOk(["get", "job", "impostor", "-n", ns, "-o", "json"]));
      return (
        (j.status?.conditions ?? []).some(
          (c: { type: string; status: string }) => c.type === "Failed" && c.status === "True",
        ) || undefined
      );
    },
    60_000,
    500,
  );
  const m = localRunManifest({ namespace: ns, name: "owned", dataBucket: data, runsBucket: runs });
  m.spec.artifacts.s3.prefix = "owned/";
  create(m);
  await waitFor(
    "the run's own Job",
    () => trainerJobs("owned").includes("owned-r0000-train") || undefined,
    60_000,
    500,
  );
  assert.equal(await exists(runs, "owned/rounds/0000/failed.json"), false, "the impostor's failure is not the round's");
  assert.notEqual(runRounds(ns, "owned")[0]?.phase, "Failed");
});
