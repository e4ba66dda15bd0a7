// kstatus, Argo CD and Flux read real ContinualClipRuns from the local cluster, each through the
// library the tool embeds (dev/tools/gitops-health: cli-utils kstatus, gopher-lua, cel-go), in every
// situation of the table in docs/operations.md.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { REPO_ROOT, getRun, kubectl, kubectlOk, waitFor } from "../../support/cluster.ts";
import {
  OPERATOR_IMAGE,
  createBucket,
  localRunManifest,
  startOperator,
  type Proc,
  testNamespace,
} from "../../support/local-run.ts";
import { putSlice } from "../data/slices.ts";
import { putObject, s3Client } from "../../support/s3.ts";
import { ok, tmpFile, toolPath } from "./tools.ts";

let ns = "";
let operator: Proc | undefined;
let data = "";
let runs = "";
// No leader election: the test stops and restarts the operator and must not wait for a Lease to expire.
const start = () => (operator = startOperator([ns], ["--evaluator-image", OPERATOR_IMAGE, "--leader-elect", "false"]));

const argocdScript = () => {
  const cm = YAML.parse(readFileSync(path.join(REPO_ROOT, "docs/gitops/argocd-cm.yaml"), "utf8"));
  return tmpFile("health.lua", cm.data["resource.customizations.health.ticclip.dev_ContinualClipRun"]);
};

function create(name: string, spec: Record<string, any> = {}): void {
  const manifest = localRunManifest({ namespace: ns, name, dataBucket: data, runsBucket: runs, spec });
  kubectlOk(["create", "-f", "-"], JSON.stringify(manifest));
}

function condition(name: string, type: string): { status: string; reason: string } | undefined {
  return getRun(ns, name)?.status?.conditions?.find((c) => c.type === type);
}

const reasonIs = (name: string, type: string, reason: string) =>
  waitFor(`${name}: ${type} ${reason}`, () => condition(name, type)?.reason === reason || undefined, 60_000, 250);

before(async () => {
  ns = testNamespace("gitops");
  data = await createBucket("gitops-data");
  runs = await createBucket("gitops-runs");
  // Valid manifest and shard listing are all discovery needs: no trainer ever reads these shards.
  await putSlice(s3Client(), data, "slices/", { id: "2016", shards: [256] });
  start();
});
after(async () => {
  await operator?.stop();
  // Its stalled and never-trained runs would otherwise be work for any later all-namespace operator.
  kubectl(["delete", "namespace", ns, "--wait=false"]);
});

test("kstatus, the Argo CD script and the Flux expressions agree with the documented table", async () => {
  // No executor runs here: Jobs are created but never run, so a round stays where it is put.
  const empty = await createBucket("gitops-empty");
  const waiting = localRunManifest({ namespace: ns, name: "waiting", dataBucket: empty, runsBucket: runs });
  kubectlOk(["create", "-f", "-"], JSON.stringify(waiting));
  create("training");
  create("evaluating", { evaluation: { runner: { mode: "Job" } } });
  create("suspended", { suspend: true });
  create("s3-down", {
    source: {
      s3: {
        bucket: data,
        prefix: "slices/",
        endpoint: "http://127.0.0.1:1",
        credentialsSecretRef: { name: "s3-creds" },
      },
    },
  });
  const endpoint = process.env.S3_ENDPOINT;
  create("no-secret", {
    source: { s3: { bucket: data, prefix: "slices/", endpoint, credentialsSecretRef: { name: "x" } } },
  });
  await reasonIs("waiting", "Ready", "WaitingForData");
  await reasonIs("training", "Ready", "RoundTraining");
  await reasonIs("evaluating", "Ready", "RoundTraining");
  // The trainer's markers, as a finished round leaves them: the round is evaluated next.
  for (const f of ["checkpoint.pt", "_SUCCESS"]) await putObject(s3Client(), runs, `evaluating/rounds/0000/${f}`, "x");
  await reasonIs("evaluating", "Ready", "RoundEvaluating");
  await reasonIs("suspended", "Ready", "Suspended");
  await reasonIs("s3-down", "Stalled", "S3Network");
  await reasonIs("no-secret", "Stalled", "SecretMissing");
  // A spec change the operator has not seen yet, and a run it has never seen.
  await operator!.stop();
  kubectlOk(["patch", "ccr", "waiting", "-n", ns, "--type", "merge", "-p", '{"spec":{"historyLimit":7}}']);
  create("unseen");

  const list = kubectlOk(["get", "ccr", "-n", ns, "-o", "json"]);
  const captured = path.join(REPO_ROOT, ".local", "test-logs", "gitops-captured-runs.json");
  mkdirSync(path.dirname(captured), { recursive: true });
  writeFileSync(captured, list);
  const health = (args: string[]) => {
    const results = JSON.parse(ok(toolPath("gitops_health"), args, list)) as Array<{ name: string; status: string }>;
    return Object.fromEntries(results.map((r) => [r.name, r.status]));
  };
  const kstatus = health(["kstatus"]);
  const argocd = health(["argocd", argocdScript()]);
  const flux = health(["flux", path.join(REPO_ROOT, "docs/gitops/flux-kustomization.yaml")]);
  const table: Record<string, [string, string, string]> = {
    // name: [kstatus, Argo CD, Flux healthCheckExprs]
    waiting: ["InProgress", "Progressing", "InProgress"], // generation 2 not yet observed
    training: ["Current", "Healthy", "Current"],
    evaluating: ["Current", "Healthy", "Current"],
    suspended: ["Current", "Suspended", "Current"],
    "s3-down": ["Failed", "Degraded", "Failed"],
    "no-secret": ["Failed", "Degraded", "Failed"],
    unseen: ["Current", "Progressing", "Error"], // kstatus cannot tell "no status yet"; the others wait
  };
  for (const [name, [k, a, f]] of Object.entries(table)) {
    assert.deepEqual([kstatus[name], argocd[name], flux[name]], [k, a, f], `${name}: kstatus, Argo CD, Flux`);
  }

  // kubectl wait reads the same conditions, and waits for the condition's observedGeneration.
  start();
  await reasonIs("unseen", "Ready", "RoundTraining");
  kubectlOk(["wait", "ccr/waiting", "-n", ns, "--for=condition=Ready", "--timeout=60s"]);
  assert.equal(getRun(ns, "waiting")?.status?.observedGeneration, 2);
  kubectlOk(["wait", "ccr/training", "-n", ns, "--for=condition=Ready", "--timeout=10s"]);
  const stalled = kubectl(["wait", "ccr/s3-down", "-n", ns, "--for=condition=Stalled=false", "--timeout=3s"]);
  assert.notEqual(stalled.code, 0, "a stalled run never satisfies Stalled=false");
});
