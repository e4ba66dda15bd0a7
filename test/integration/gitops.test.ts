// Issue 27: a promotion becomes a Git commit, against the real parts: kube-apiserver, MinIO, the
// operator as a process, and a real Git server (git http-backend behind HTTPS with basic auth,
// test/support/git-server.ts). Rounds start from folders already trained and evaluated (seeded),
// so the operator judges, promotes and commits without training.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { getRun, kubectlOk, waitFor } from "../support/cluster.ts";
import { GitServer } from "../support/git-server.ts";
import { createBucket, localRunManifest, startOperator, type Proc, testNamespace } from "../support/local-run.ts";
import { roundFiles } from "../support/rounds.ts";
import { putObject, s3Client } from "../support/s3.ts";

let ns = "";
let server: GitServer;
let operator: Proc;
const logs: string[] = [];

const start = () => {
  operator = startOperator([ns]);
  logs.push(operator.logFile);
};

before(async () => {
  ns = testNamespace("gitops");
  server = await GitServer.start();
  const ca = path.join(os.tmpdir(), `ticclip-git-ca-${ns}.crt`);
  writeFileSync(ca, server.ca);
  const secret = (name: string, password: string) =>
    kubectlOk([
      "create",
      "secret",
      "generic",
      name,
      "-n",
      ns,
      `--from-literal=username=${server.username}`,
      `--from-literal=password=${password}`,
      `--from-file=ca.crt=${ca}`,
    ]);
  secret("git-creds", server.password);
  secret("git-wrong", "not-the-password");
  start();
});
after(async () => {
  await operator?.stop();
  await server?.stop();
});

const ISVC = (run: string) => `apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: clip
spec:
  predictor:
    model:
      modelFormat:
        name: onnx
      storageUri: s3://models/none/ # {"$ticclip": "${ns}:${run}:uri"}
`;

type Condition = { type: string; status: string; reason: string; message: string };
const condition = (name: string, type: string) =>
  ((getRun(ns, name)?.status as { conditions?: Condition[] } | undefined)?.conditions ?? []).find(
    (c) => c.type === type,
  );
const promoted = (name: string) =>
  (getRun(ns, name)?.status as { promoted?: { version: number } } | undefined)?.promoted;
const patchPromotion = (name: string, promotion: unknown) =>
  kubectlOk(["patch", "ccr", name, "-n", ns, "--type", "merge", "-p", JSON.stringify({ spec: { promotion } })]);

async function seed(bucket: string, prefix: string, index: number, recall: number): Promise<void> {
  // A round folder belongs to the run named in its plan: the run named like the prefix.
  const run = { namespace: ns, name: prefix.slice(0, -1) };
  for (const [key, body] of roundFiles(bucket, prefix, index, { recall, model: true, run }))
    await putObject(s3Client(), bucket, key, body);
}

async function getJson(bucket: string, key: string): Promise<any> {
  const res = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return JSON.parse(await res.Body!.transformToString());
}

/** A run whose promotion writes to repository `repo` of the Git server, with round 0 seeded. */
async function createRun(name: string, repo: string, git: Record<string, unknown> = {}) {
  const data = await createBucket("gitops-data");
  const runs = await createBucket("gitops-runs");
  const models = await createBucket("gitops-models");
  await seed(runs, `${name}/`, 0, 0.5);
  const m = localRunManifest({ namespace: ns, name, dataBucket: data, runsBucket: runs });
  Object.assign(m.spec, {
    evaluation: { gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0.3 }] },
    promotion: {
      mode: "Auto",
      s3: { bucket: models, prefix: "clip/" },
      git: {
        url: server.url(repo),
        path: "clip/model.yaml",
        markerFiles: ["clip/isvc.yaml"],
        secretRef: { name: "git-creds" },
        author: { name: "ticclip-bot", email: "bot@ticclip.dev" },
        ...git,
      },
    },
  });
  kubectlOk(["create", "-f", "-"], JSON.stringify(m));
  return { runs, models };
}

const gitSynced = (name: string, version: number) =>
  waitFor(
    `${name}: GitSynced with v${version}`,
    () => {
      const c = condition(name, "GitSynced");
      return c?.status === "True" && c.message.startsWith(`v${version} `) ? c : undefined;
    },
    90_000,
    250,
  );

test("a promotion is exactly one commit with the file and the message; reconciling again, or a new process, none", async () => {
  server.createRepo("one", { "clip/isvc.yaml": ISVC("one"), "README.md": "serving\n" });
  const { runs, models } = await createRun("one", "one");
  await gitSynced("one", 1);
  const log = server.log("one");
  assert.equal(log.length, 2, "the initial commit and the promotion");
  const [commit] = log;
  assert.equal(commit!.author, "ticclip-bot");
  assert.equal(commit!.email, "bot@ticclip.dev");
  assert.equal(commit!.message.split("\n")[0], "one: promote production to v1 (round 0)");
  assert.match(commit!.message, new RegExp(`ContinualClipRun ${ns}/one\nModel: s3://${models}/clip/v1/`));
  assert.match(commit!.message, /Gates:\n- retrieval\.id\.meanRecallAt1: 0\.5 \(threshold 0\.3\) passed/);
  const file = server.show("one", "main", "clip/model.yaml")!;
  assert.match(file, /^# Written by continual-clip-operator for ContinualClipRun /);
  assert.match(file, new RegExp(`uri: "s3://${models}/clip/v1/"\n`));
  assert.match(file, /version: "1"\n/);
  assert.match(file, /config.kubernetes.io\/local-config: "true"/);
  assert.match(
    server.show("one", "main", "clip/isvc.yaml")!,
    new RegExp(`storageUri: s3://${models}/clip/v1/ # \\{"\\$ticclip": "${ns}:one:uri"\\}`),
  );
  // Git follows S3: the alias was written first.
  assert.equal((await getJson(models, "clip/production.json")).version, 1);
  const pushed = server.requests.filter((r) => r.path === "/one.git/git-receive-pack" && r.status === 200);
  assert.equal(pushed.length, 1, "one push");
  assert.ok(await getJson(runs, "one/rounds/0000/verdict.json"), "judged");

  // A new generation is reconciled; the pointer was synced: nothing is fetched or pushed.
  const before = server.count("one");
  kubectlOk(["patch", "ccr", "one", "-n", ns, "--type", "merge", "-p", '{"spec":{"historyLimit":30}}']);
  const generation = getRun(ns, "one")!.metadata.generation;
  await waitFor("generation observed", () =>
    (getRun(ns, "one")?.status as { observedGeneration?: number } | undefined)?.observedGeneration === generation
      ? true
      : undefined,
  );
  assert.deepEqual(server.count("one"), before);

  // A new operator process remembers nothing: it fetches once, finds the files saying it, pushes nothing.
  await operator.stop();
  start();
  await waitFor("the new process fetched", () => (server.count("one").fetch > before.fetch ? true : undefined), 60_000);
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(server.count("one").push, before.push, "no push");
  assert.equal(server.log("one").length, 2, "no second commit");
});

test("rollback with pinVersion and unpinning each produce a commit", async () => {
  server.createRepo("pin", { "clip/isvc.yaml": ISVC("pin") });
  const { runs } = await createRun("pin", "pin");
  await gitSynced("pin", 1);
  await seed(runs, "pin/", 1, 0.6);
  await gitSynced("pin", 2);
  const models = (getRun(ns, "pin")!.spec as { promotion: { s3: unknown } }).promotion.s3;
  patchPromotion("pin", { pinVersion: 1 });
  await gitSynced("pin", 1);
  patchPromotion("pin", { pinVersion: null });
  await gitSynced("pin", 2);
  assert.ok(models);
  assert.deepEqual(
    server.log("pin").map((c) => c.message.split("\n")[0]),
    [
      "pin: promote production to v2 (round 1)",
      "pin: roll back production to v1 (round 0)",
      "pin: promote production to v2 (round 1)",
      "pin: promote production to v1 (round 0)",
      "initial commit",
    ],
  );
  assert.match(server.show("pin", "main", "clip/model.yaml")!, /pinned: "false"\n/);
});

test("wrong credentials, a missing branch, an unparseable file: a condition naming the cause, S3 promotion unaffected", async () => {
  server.createRepo("bad-creds", { "clip/isvc.yaml": ISVC("bad-creds") });
  server.createRepo("bad-branch", { "clip/isvc.yaml": ISVC("bad-branch") });
  server.createRepo("bad-file", { "clip/isvc.yaml": "spec: [oops\n" });
  const cases = [
    { name: "bad-creds", git: { secretRef: { name: "git-wrong" } }, reason: "GitAuthFailed", field: "secretRef" },
    { name: "bad-branch", git: { branch: "release" }, reason: "GitBranchNotFound", field: "branch" },
    { name: "bad-file", git: {}, reason: "GitFileUnparseable", field: "markerFiles" },
  ];
  const created = [];
  for (const c of cases) created.push({ ...c, ...(await createRun(c.name, c.name, c.git)) });
  for (const c of created) {
    const git = await waitFor(
      `${c.name}: GitSynced False`,
      () => {
        const g = condition(c.name, "GitSynced");
        return g?.status === "False" ? g : undefined;
      },
      90_000,
      250,
    );
    assert.equal(git.reason, c.reason);
    assert.match(git.message, new RegExp(`^spec\\.promotion\\.git\\.${c.field}: `));
    const stalled = condition(c.name, "Stalled")!;
    assert.deepEqual([stalled.status, stalled.reason], ["True", c.reason]);
    assert.equal(promoted(c.name)?.version, 1, "promoted in S3");
    assert.equal((await getJson(c.models, "clip/production.json")).version, 1);
    assert.equal(server.log(c.name).length, 1, "nothing pushed");
  }
  const events = kubectlOk(["get", "events", "-n", ns, "-o", "json"]);
  assert.ok(events.includes('"reason": "GitAuthFailed"'));
  // Credentials appear in no status, Event or log line.
  const everything = [
    events,
    kubectlOk(["get", "ccr", "-n", ns, "-o", "json"]),
    ...logs.map((f) => readFileSync(f, "utf8")),
  ].join("\n");
  for (const secret of [server.password, "not-the-password", Buffer.from(`${server.username}:`).toString("base64")])
    assert.equal(everything.includes(secret), false, "a credential leaked");
});

test("kill -9 between the alias write and the push: the next process commits, once", async () => {
  server.createRepo("crash", { "clip/isvc.yaml": ISVC("crash") });
  let models = "";
  let aliasAtKill: number | undefined;
  server.beforeNextPush(async () => {
    aliasAtKill = (await getJson(models, "clip/production.json")).version;
    await operator.stop("SIGKILL");
    return "drop";
  });
  ({ models } = await createRun("crash", "crash"));
  await waitFor(
    "the operator killed at its push",
    () => (operator.child.signalCode === "SIGKILL" ? true : undefined),
    90_000,
  );
  assert.equal(aliasAtKill, 1, "the alias was written before the push");
  assert.equal(server.log("crash").length, 1, "nothing reached the branch");
  start();
  await gitSynced("crash", 1);
  assert.deepEqual(
    server.log("crash").map((c) => c.message.split("\n")[0]),
    ["crash: promote production to v1 (round 0)", "initial commit"],
  );
});
