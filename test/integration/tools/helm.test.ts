// The chart, read by the real helm (v3, built from the Go module proxy) and the local kube-apiserver.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import YAML from "yaml";
import { applyCrds, createNamespace, kubectlOk } from "../../support/cluster.ts";
import { CHART, helm, helmOk, renderChart } from "./tools.ts";

let release = "";
let teamA = "";
let teamB = "";
const installed: string[] = [];

before(() => {
  applyCrds();
  release = createNamespace("helm-ops");
  teamA = createNamespace("helm-a");
  teamB = createNamespace("helm-b");
});
after(() => {
  for (const ns of installed) helm(["uninstall", "rel", "-n", ns]);
});

const renderings: Array<{ name: string; set: string[] }> = [
  { name: "default values", set: [] },
  { name: "namespace-scoped values", set: [`watchNamespaces={${"A"},${"B"}}`] },
  { name: "notifications enabled", set: ["notifications.enabled=true", "notifications.token=s3cret"] },
  { name: "all namespaces", set: ["watchAllNamespaces=true"] },
  { name: "alerts and dashboard", set: ["prometheusRule.enabled=true", "dashboard.enabled=true"] },
];
const withNamespaces = (set: string[]) => set.map((s) => s.replace("{A,B}", `{${teamA},${teamB}}`));

test("helm lint passes with each set of values", () => {
  for (const r of renderings) {
    helmOk(["lint", CHART, "--namespace", release, ...withNamespaces(r.set).flatMap((s) => ["--set", s])]);
  }
});

for (const r of renderings) {
  test(`helm template with ${r.name} is accepted by the API server (kubectl apply --dry-run=server)`, () => {
    const objects = renderChart(release, withNamespaces(r.set));
    // PrometheusRule needs the Prometheus Operator's CRD, which this cluster lacks: promtool checks it.
    const appliable = objects.filter((o) => !String(o.apiVersion).startsWith("monitoring.coreos.com/"));
    const yaml = appliable.map((o) => YAML.stringify(o)).join("---\n");
    const out = kubectlOk(["apply", "--dry-run=server", "-f", "-"], yaml);
    assert.equal(out.trim().split("\n").length, appliable.length, out);
  });
}

test("RBAC follows the mode: Roles in the watched namespaces by default, a ClusterRole only when asked", () => {
  const kinds = (set: string[]) =>
    renderChart(release, withNamespaces(set))
      .filter((o) => /Role/.test(o.kind) && !o.metadata.name.endsWith("-leader-election"))
      .map((o) => `${o.kind}/${o.metadata.namespace ?? ""}`)
      .sort();
  assert.deepEqual(kinds([]), [`Role/${release}`, `RoleBinding/${release}`]);
  const roles = [`Role/${teamA}`, `Role/${teamB}`, `RoleBinding/${teamA}`, `RoleBinding/${teamB}`];
  assert.deepEqual(kinds(renderings[1]!.set), roles);
  assert.deepEqual(kinds(["watchAllNamespaces=true"]), ["ClusterRole/", "ClusterRoleBinding/"]);
  const deployment = renderChart(release, withNamespaces(renderings[1]!.set)).find((o) => o.kind === "Deployment")!;
  assert.ok(deployment.spec.template.spec.containers[0].args.includes(`--namespaces=${teamA},${teamB}`));
});

test("bad values are rejected by the generated schema or the templates, naming the value", () => {
  const bad: Array<[string[], RegExp]> = [
    [["replicas=0"], /replicas.*minimum/],
    [["watchNamespace={x}"], /watchNamespace/],
    [["logLevel=verbose"], /logLevel/],
    [["watchAllNamespaces=true", "watchNamespaces={x}"], /watchNamespaces must be empty when watchAllNamespaces/],
    [["notifications.enabled=true"], /notifications.token/],
  ];
  for (const [set, message] of bad) {
    const r = helm(["template", "rel", CHART, ...set.flatMap((s) => ["--set", s])]);
    assert.notEqual(r.code, 0, set.join(","));
    assert.match(r.stderr, message);
  }
});

test("helm install creates the CRD, RBAC, ServiceAccount and Deployment (its pod never runs: no kubelet)", () => {
  const ns = createNamespace("helm-install");
  installed.push(ns);
  const out = helmOk(["install", "rel", CHART, "--namespace", ns]);
  assert.match(out, /STATUS: deployed/);
  assert.match(out, new RegExp(`It reconciles ContinualClipRuns in: ${ns}\\.`), "NOTES name the watched namespace");
  kubectlOk(["get", "crd", "continualclipruns.ticclip.dev"]);
  const kinds = "serviceaccount,role,rolebinding,deployment,service";
  const names = kubectlOk(["get", kinds, "-n", ns, "-o", "name"]).split("\n");
  for (const want of [
    "serviceaccount/rel-continual-clip-operator",
    "role.rbac.authorization.k8s.io/rel-continual-clip-operator",
    "role.rbac.authorization.k8s.io/rel-continual-clip-operator-leader-election",
    "rolebinding.rbac.authorization.k8s.io/rel-continual-clip-operator",
    "deployment.apps/rel-continual-clip-operator",
    "service/rel-continual-clip-operator",
  ])
    assert.ok(names.includes(want), `${want} in ${names.join(" ")}`);
  const deployment = kubectlOk(["get", "deployment", "rel-continual-clip-operator", "-n", ns, "-o", "json"]);
  const status = JSON.parse(deployment).status ?? {};
  assert.equal(status.readyReplicas ?? 0, 0, "no kubelet runs pods in the local cluster");
  const manifest = helmOk(["get", "manifest", "rel", "-n", ns]);
  assert.doesNotMatch(manifest, /kind: ClusterRole/, "no ClusterRole in the default mode");
});
