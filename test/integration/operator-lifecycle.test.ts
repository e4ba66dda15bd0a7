// The walking operator against the real local cluster: status follows generation, the watch
// survives an API server restart, and an operator restart changes nothing.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { clusterScript, getRun, kubectlOk, waitFor } from "../support/cluster.ts";
import { createBucket, localRunManifest, startOperator, type Proc, testNamespace } from "../support/local-run.ts";

let ns = "";
let dataBucket = "";
let runsBucket = "";
let operator: Proc | undefined;

function createRun(name: string): void {
  kubectlOk(["create", "-f", "-"], JSON.stringify(localRunManifest({ namespace: ns, name, dataBucket, runsBucket })));
}

const reconciledAt = (name: string, generation: number) =>
  waitFor(
    `${name} reconciled at generation ${generation}`,
    () => {
      const run = getRun(ns, name);
      const ready = run?.status?.conditions?.find((c) => c.type === "Ready");
      return run?.status?.observedGeneration === generation && ready?.observedGeneration === generation
        ? run
        : undefined;
    },
    60_000,
  );

before(async () => {
  ns = testNamespace("op");
  dataBucket = await createBucket("op-data");
  runsBucket = await createBucket("op-runs");
  // Short watch timeout so the watch cycles several times during the test.
  operator = startOperator([ns], ["--watch-timeout-seconds", "15", "--resync-seconds", "30"]);
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
  assert.equal(run.status!.conditions!.find((c) => c.type === "Degraded")?.status, "False");
  const events = kubectlOk([
    "get",
    "events",
    "-n",
    ns,
    "--field-selector",
    "involvedObject.name=alpha",
    "-o",
    "jsonpath={.items[*].reason}",
  ]);
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
  operator = startOperator([ns], ["--watch-timeout-seconds", "15"]);
  // The new operator takes over the lease once the killed one's expires, then lists everything.
  await waitFor("new operator leads", () => readFileSync(operator!.logFile, "utf8").includes("became leader"), 40_000);
  await new Promise((r) => setTimeout(r, 5000));
  assert.equal(getRun(ns, "alpha")!.metadata.resourceVersion, a.metadata.resourceVersion, "alpha untouched");
  assert.equal(getRun(ns, "beta")!.metadata.resourceVersion, b.metadata.resourceVersion, "beta untouched");
  const events = JSON.parse(kubectlOk(["get", "events", "-n", ns, "-o", "json"])) as {
    items: Array<{ involvedObject: { name: string }; reason: string; count: number }>;
  };
  const waiting = events.items.filter((e) => e.involvedObject.name === "beta" && e.reason === "WaitingForData");
  assert.equal(waiting.length, 1, "one event object");
  assert.equal(waiting[0]!.count, 1, "not emitted again after restart");
});
