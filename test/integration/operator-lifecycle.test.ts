// The walking operator against the real local cluster: status follows generation, the watch
// survives an API server restart, and an operator restart changes nothing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import {
  REPO_ROOT,
  applyCrds,
  clusterScript,
  createNamespace,
  getRun,
  kubectlOk,
  startOperatorProcess,
  waitFor,
  type OperatorProcess,
} from "../support/cluster.ts";

const minimal = YAML.parse(readFileSync(path.join(REPO_ROOT, "examples/minimal.yaml"), "utf8"));
let ns = "";
let operator: OperatorProcess | undefined;

function createRun(name: string, mutate?: (spec: any) => void): void {
  const doc = structuredClone(minimal);
  doc.metadata = { name, namespace: ns };
  mutate?.(doc.spec);
  kubectlOk(["create", "-f", "-"], JSON.stringify(doc));
}

const reconciledAt = (name: string, generation: number) =>
  waitFor(`${name} reconciled at generation ${generation}`, () => {
    const run = getRun(ns, name);
    const ready = run?.status?.conditions?.find((c) => c.type === "Ready");
    return run?.status?.observedGeneration === generation && ready?.observedGeneration === generation ? run : undefined;
  }, 60_000);

before(() => {
  applyCrds();
  ns = createNamespace("op");
  // Short watch timeout so the watch cycles several times during the test.
  operator = startOperatorProcess([ns], ["--watch-timeout-seconds", "15", "--resync-seconds", "30"]);
});
after(async () => {
  await operator?.stop();
});

test("a new run gets observedGeneration and a Ready condition", async () => {
  createRun("alpha");
  const run = await reconciledAt("alpha", 1);
  const ready = run.status!.conditions!.find((c) => c.type === "Ready")!;
  assert.equal(ready.status, "True");
  assert.equal(ready.reason, "WaitingForData");
  assert.match(ready.lastTransitionTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.equal(run.status!.phase, "Waiting");
  const events = kubectlOk(["get", "events", "-n", ns, "--field-selector", "involvedObject.name=alpha", "-o", "jsonpath={.items[*].reason}"]);
  assert.match(events, /WaitingForData/);
});

test("a spec change moves observedGeneration and flips conditions with a new transition time", async () => {
  const before = await reconciledAt("alpha", 1);
  const readyBefore = before.status!.conditions!.find((c) => c.type === "Ready")!;
  await new Promise((r) => setTimeout(r, 1100)); // transition times have second resolution
  kubectlOk(["patch", "ccr", "alpha", "-n", ns, "--type", "merge", "-p", '{"spec":{"suspend":true}}']);
  const run = await reconciledAt("alpha", 2);
  const ready = run.status!.conditions!.find((c) => c.type === "Ready")!;
  assert.equal(run.status!.phase, "Suspended");
  assert.equal(ready.status, "True", "suspended is healthy");
  assert.equal(ready.reason, "Suspended");
  assert.equal(ready.lastTransitionTime, readyBefore.lastTransitionTime, "status did not flip, so the time stays");
  assert.equal(run.spec.suspend, true, "the operator never writes spec");
});

test("the watch recovers after the API server is killed and restarted", async () => {
  clusterScript("stop", "kube-apiserver");
  await new Promise((r) => setTimeout(r, 3000)); // the operator now sees connection errors
  clusterScript("up");
  createRun("beta");
  await reconciledAt("beta", 1);
});

test("restarting the operator does no duplicate work and leaves status unchanged", async () => {
  const a = await reconciledAt("alpha", 2);
  const b = await reconciledAt("beta", 1);
  await operator!.stop("SIGKILL");
  operator = startOperatorProcess([ns], ["--watch-timeout-seconds", "15"]);
  // Give the new operator time to list and reconcile everything.
  await waitFor("operator listed runs", () => readFileSync(operator!.logFile, "utf8").includes("operator started"), 30_000);
  await new Promise((r) => setTimeout(r, 5000));
  assert.equal(getRun(ns, "alpha")!.metadata.resourceVersion, a.metadata.resourceVersion, "alpha untouched");
  assert.equal(getRun(ns, "beta")!.metadata.resourceVersion, b.metadata.resourceVersion, "beta untouched");
  const events = JSON.parse(kubectlOk(["get", "events", "-n", ns, "-o", "json"])) as { items: Array<{ involvedObject: { name: string }; reason: string; count: number }> };
  const waiting = events.items.filter((e) => e.involvedObject.name === "beta" && e.reason === "WaitingForData");
  assert.equal(waiting.length, 1, "one event object");
  assert.equal(waiting[0]!.count, 1, "not emitted again after restart");
});
