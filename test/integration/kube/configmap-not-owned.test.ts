// Issue 21 item 5: a model ConfigMap someone else creates after the run remembered it absent. The
// real ChildClient (ConfigMap watch cache synced) against the local kube-apiserver, driven by the
// Reconciler over an in-memory S3: the run must say ConfigMapNotOwned and back off, not apply it in
// a loop of requeueAfter(0) with Ready=True.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Reconciler } from "../../../operator/controller/reconcile.ts";
import { ChildClient, modelConfigMap, type ModelConfigMap } from "../../../operator/kube/children.ts";
import { loadKubeConfig } from "../../../operator/kube/client.ts";
import { WatchCache } from "../../../operator/kube/watch.ts";
import { createNamespace, kubectlOk, requireEnv } from "../../support/cluster.ts";
import { roundFiles } from "../../support/rounds.ts";
import { putSlice } from "../../unit/data/memory-store.ts";
import { demoRun, FakeEvents, FakeRuns, memoryStorage, quietLog } from "../../unit/controller/fakes.ts";

test("a foreign ConfigMap created after the run remembered it absent is reported once and backed off from", async () => {
  const ns = createNamespace("cm-loop");
  const kc = loadKubeConfig(requireEnv("KUBECONFIG"));
  // The ConfigMap watch has listed this namespace (nothing carries our labels yet): reads come from it.
  const configMaps = new WatchCache<ModelConfigMap>({ scopes: [ns], project: modelConfigMap });
  configMaps.replace(ns, []);
  const children = new ChildClient(kc, undefined, configMaps);
  let applies = 0;
  const apply = children.applyConfigMap.bind(children);
  children.applyConfigMap = (cm) => {
    applies++;
    return apply(cm);
  };
  const runs = new FakeRuns();
  const run = demoRun(
    { promotion: { s3: { bucket: "models", prefix: "clip/" }, configMapName: "demo-model" } },
    "uid-demo",
    ns,
  );
  runs.add(run);
  const s3 = memoryStorage();
  putSlice(s3.slices, "slices/", "2016");
  for (const [key, body] of roundFiles("runs", "demo/", 0, {
    recall: 0.9,
    model: true,
    run: { namespace: ns, name: "demo" },
  }))
    await s3.objects.put(`s3://runs/${key}`, body);
  const reconciler = new Reconciler({
    runs,
    children,
    events: new FakeEvents(),
    log: quietLog,
    storage: () => s3.storage,
    // The run names no Secret: the operator's own identity (here: in-memory S3) is allowed.
    allowDefaultCredentials: true,
  });
  const reconcile = () => reconciler.reconcile(`${ns}/demo`);
  const ready = () =>
    (
      runs.runs.get(`${ns}/demo`)!.status as { conditions: { type: string; reason: string; status: string }[] }
    ).conditions.find((c) => c.type === "Ready")!;

  // First pass: the ConfigMap is read as absent (and remembered so), round 0 is promoted.
  await reconcile();
  assert.ok(s3.objects.objects.has("s3://models/clip/production.json"), "round 0 promoted");
  assert.equal(applies, 0);
  // Someone else takes the name.
  kubectlOk(["create", "configmap", "demo-model", "-n", ns, "--from-literal=owner=someone-else"]);

  const outcomes: string[] = [];
  for (let i = 0; i < 4; i++) {
    const o = await reconcile();
    outcomes.push(o.kind === "requeueAfter" && o.ms === 0 ? "now" : o.kind);
  }
  assert.equal(ready().status, "False");
  assert.equal(ready().reason, "ConfigMapNotOwned");
  assert.ok(!outcomes.includes("now"), `no pass requeued at once: ${outcomes.join(", ")}`);
  assert.equal(applies, 1, "the write was tried once; later passes see the owner and do not try again");
  const cm = JSON.parse(kubectlOk(["get", "configmap", "demo-model", "-n", ns, "-o", "json"]));
  assert.deepEqual(cm.data, { owner: "someone-else" }, "left untouched");
  kubectlOk(["delete", "namespace", ns, "--wait=false"]);
});
