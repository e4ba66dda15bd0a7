// The chart's RBAC, proven: the operator process runs with the chart's ServiceAccount identity (a
// token from the TokenRequest API, the rendered RBAC applied) through a full round with promotion,
// in the default namespace-scoped mode and in watchAllNamespaces mode.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import YAML from "yaml";
import { applyCrds, createNamespace, kubectl, kubectlOk, requireEnv, waitFor } from "../../support/cluster.ts";
import {
  OPERATOR_IMAGE,
  createBucket,
  createS3Secret,
  localRunManifest,
  roundsTrained,
  startExecutor,
  startOperator,
  writeSlices,
  type Proc,
} from "../../support/local-run.ts";
import { renderChart, tmpFile } from "./tools.ts";

const SA = "rel-continual-clip-operator";
const procs: Proc[] = [];

before(() => applyCrds());
after(async () => {
  for (const p of procs) await p.stop();
  kubectl(["delete", "clusterrole,clusterrolebinding", SA, "--ignore-not-found"]);
});

// What operator/kube/ calls, and so all the chart may grant in a watched namespace:
// runs get (reconcile) + list/watch (watch); status patch (patchStatus); Jobs list/watch (Job watch,
// roundJobs) + create (createIfAbsent); Pods list (last failed pod of a Job; a stalled Job's pods),
// pods/eviction create (spec.trainer.restartOnStall); Services create (rendezvous); ConfigMaps get/create/update (model ConfigMap); Secrets get (S3 credentials);
// Events get/create/patch (recorder aggregates repeats).
const EXPECTED: Record<string, string[]> = {
  "continualclipruns.ticclip.dev": ["get", "list", "watch"],
  "continualclipruns.ticclip.dev/status": ["patch"],
  "jobs.batch": ["create", "list", "watch"],
  pods: ["list"],
  "pods/eviction": ["create"],
  services: ["create"],
  configmaps: ["create", "get", "list", "update", "watch"],
  secrets: ["get"],
  events: ["create", "get", "patch"],
};
// Granted to every authenticated identity by the API server's default roles.
const EVERYONE = /^self(subject)?(access|rules)?reviews\.|^selfsubjectreviews\./;

/** `kubectl auth can-i --list` for the ServiceAccount in a namespace, as resource -> sorted verbs. */
function canIList(saNamespace: string, namespace: string): Record<string, string[]> {
  const as = `--as=system:serviceaccount:${saNamespace}:${SA}`;
  const out = kubectlOk(["auth", "can-i", "--list", "-n", namespace, as]);
  const rows: Record<string, string[]> = {};
  for (const line of out.split("\n").slice(1)) {
    const m = /^(\S+)\s+\[\]\s+\[(.*?)\]\s+\[(.*)\]\s*$/.exec(line.trim());
    if (!m || EVERYONE.test(m[1]!)) continue; // non-resource URLs have no resource column
    assert.equal(m[2], "", `no resourceNames expected for ${m[1]}`);
    rows[m[1]!] = [...new Set([...(rows[m[1]!] ?? []), ...m[3]!.split(" ")])].sort();
  }
  return rows;
}

/** Applies the chart's ServiceAccount and RBAC (nothing else) and returns a kubeconfig with its token. */
function installIdentity(operatorNs: string, set: string[]): string {
  const rbac = renderChart(operatorNs, set).filter((o) => o.kind === "ServiceAccount" || /Role/.test(o.kind));
  kubectlOk(["apply", "-f", "-"], rbac.map((o) => YAML.stringify(o)).join("---\n"));
  const token = kubectlOk(["create", "token", SA, "-n", operatorNs, "--duration=2h"]).trim();
  const admin = YAML.parse(readFileSync(requireEnv("KUBECONFIG"), "utf8"));
  admin.users = [{ name: "sa", user: { token } }];
  admin.contexts = [{ name: "sa", context: { cluster: admin.clusters[0].name, user: "sa" } }];
  admin["current-context"] = "sa";
  return tmpFile(`sa-${operatorNs}.kubeconfig`, YAML.stringify(admin));
}

/** One round trained, evaluated by an evaluation Job and promoted, with the model ConfigMap written. */
async function roundWithPromotion(namespace: string, operatorNs: string, kubeconfig: string, watch: string[]) {
  createS3Secret(namespace);
  const data = await createBucket("rbac-data");
  const runs = await createBucket("rbac-runs");
  const models = await createBucket("rbac-models");
  const promotion = { mode: "Auto", s3: { bucket: models, prefix: "clip/" }, alias: "prod", configMapName: "model" };
  procs.push(startExecutor([namespace]));
  // The helper's defaults (admin kubeconfig, its namespaces) are overridden: the last flag wins.
  const operator = startOperator(
    [operatorNs],
    [
      "--kubeconfig",
      kubeconfig,
      `--namespaces=${watch.join(",")}`,
      "--lease-namespace",
      operatorNs,
      "--evaluator-image",
      OPERATOR_IMAGE,
    ],
  );
  procs.push(operator);
  const spec = { promotion };
  const manifest = localRunManifest({ namespace, name: "promo", dataBucket: data, runsBucket: runs, spec });
  kubectlOk(["create", "-f", "-"], JSON.stringify(manifest));
  writeSlices(data, ["2016"]);
  const rounds = await roundsTrained(namespace, "promo", 1);
  assert.deepEqual(
    rounds.map((r) => r.phase),
    ["Promoted"],
  );
  await waitFor(
    "model ConfigMap at v1",
    () => {
      const r = kubectl(["get", "configmap", "model", "-n", namespace, "-o", "jsonpath={.data.version}"]);
      return r.code === 0 && r.stdout.trim() === "1" ? true : undefined;
    },
    60_000,
    500,
  );
  kubectlOk(["get", "service", "-n", namespace, "-l", "ticclip.dev/run=promo"]);
  await operator.stop();
  const log = readFileSync(operator.logFile, "utf8");
  // RBAC's own refusal ("... is forbidden: User "system:serviceaccount:..." cannot list resource ..."), not an
  // admission policy's: in cluster mode the operator also reconciles runs other test files left behind.
  assert.doesNotMatch(
    log,
    /forbidden: User "[^"]+" cannot/,
    `the operator was refused an API call: see ${operator.logFile}`,
  );
}

test("namespace mode: a promoted round as the chart's ServiceAccount, which reaches no other namespace", async () => {
  const operatorNs = createNamespace("rbac-op");
  const watched = createNamespace("rbac-watched");
  const other = createNamespace("rbac-other");
  const kubeconfig = installIdentity(operatorNs, [`watchNamespaces={${watched}}`]);
  await roundWithPromotion(watched, operatorNs, kubeconfig, [watched]);

  assert.deepEqual(canIList(operatorNs, watched), EXPECTED);
  assert.deepEqual(canIList(operatorNs, operatorNs), { "leases.coordination.k8s.io": ["create", "get", "update"] });
  assert.deepEqual(canIList(operatorNs, other), {});
  // Not only what RBAC says: the token itself is refused outside the watched namespace.
  createS3Secret(other, "not-yours");
  kubectlOk(["create", "configmap", "not-yours", "-n", other, "--from-literal=a=b"]);
  for (const kind of ["secret", "configmap"]) {
    const r = kubectl(["--kubeconfig", kubeconfig, "get", kind, "not-yours", "-n", other]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /forbidden/i, `${kind} in ${other}: ${r.stderr}`);
  }
});

test("cluster mode: a promoted round as the chart's ServiceAccount, with the same verbs cluster-wide", async () => {
  const operatorNs = createNamespace("rbac-cop");
  const runNs = createNamespace("rbac-any");
  const kubeconfig = installIdentity(operatorNs, ["watchAllNamespaces=true"]);
  await roundWithPromotion(runNs, operatorNs, kubeconfig, []);
  assert.deepEqual(canIList(operatorNs, runNs), EXPECTED);
  const clusterRole = JSON.parse(kubectlOk(["get", "clusterrole", SA, "-o", "json"]));
  const rules = clusterRole.rules as Array<{ resources: string[]; verbs: string[] }>;
  const verbs = rules.flatMap((r) => r.resources.map((res) => `${res}:${[...r.verbs].sort()}`));
  assert.ok(verbs.includes("secrets:get"), "Secrets: get");
  assert.ok(!verbs.some((v) => /^secrets:.*(list|watch)/.test(v)), "Secrets: never list or watch");
});
