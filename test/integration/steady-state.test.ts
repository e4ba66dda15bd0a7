// A quiet steady state: once runs are reconciled and nothing changes, reconciles read runs and
// Jobs from the watch caches and write nothing, on the local cluster's real kube-apiserver. The
// requests counted are the operator's own (its ticclip_kube_requests_total), not the API server's
// total, which also holds every other client's traffic (the namespace controller, other tests).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  applyCrds,
  createNamespace,
  kubectlOk,
  operatorKubeRequests,
  requestDelta,
  waitFor,
} from "../support/cluster.ts";
import { createBucket, createS3Secret, localRunManifest, startOperator } from "../support/local-run.ts";

const RUNS = 5;
const WINDOW_MS = 20_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The operator's S3 GETs so far (documents, progress.json, alias pointers: everything but listings). */
async function s3Gets(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith('ticclip_s3_requests_total{operation="GetObject"}'));
  return line ? Number(line.split(" ").at(-1)) : 0;
}

async function reconciles(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return text
    .split("\n")
    .filter((l) => l.startsWith("ticclip_reconcile_total{"))
    .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}

test("reconciles where nothing changed make no API read beyond the watches and no API write", async () => {
  applyCrds();
  const ns = createNamespace("steady");
  createS3Secret(ns);
  const data = await createBucket("steady-data");
  const runsBucket = await createBucket("steady-runs");
  const models = await createBucket("steady-models");
  const names = Array.from({ length: RUNS }, (_, i) => `quiet-${i}`);
  for (const name of names) {
    const m = localRunManifest({
      namespace: ns,
      name,
      dataBucket: data,
      runsBucket,
      // Promotion with a model ConfigMap not written yet: its absence is read once, not per reconcile.
      spec: {
        source: { pollInterval: "3s" },
        promotion: { mode: "Auto", s3: { bucket: models, prefix: `${name}/` }, configMapName: `${name}-model` },
      },
    });
    kubectlOk(["create", "-f", "-"], JSON.stringify(m));
  }
  const port = 20000 + Math.floor(Math.random() * 20000);
  const op = startOperator([ns], ["--metrics-address", `127.0.0.1:${port}`]);
  try {
    await waitFor(
      "every run Waiting",
      () => {
        const phases = kubectlOk(["get", "ccr", "-n", ns, "-o", "jsonpath={.items[*].status.phase}"]).trim().split(" ");
        return phases.length === RUNS && phases.every((p) => p === "Waiting") ? true : undefined;
      },
      60_000,
      500,
    );
    await sleep(2000);
    const before = await operatorKubeRequests(port);
    // The counter sees the operator's traffic: the watches it started with, runs and Jobs included.
    for (const key of ["LIST continualclipruns", "WATCH continualclipruns", "WATCH jobs", "PATCH continualclipruns"]) {
      assert.ok(
        (before.get(key) ?? 0) > 0,
        `the operator counted no ${key} before the window: ${JSON.stringify([...before])}`,
      );
    }
    const reconciled = await reconciles(port);
    const gets = await s3Gets(port);
    await sleep(WINDOW_MS);
    const delta = requestDelta(before, await operatorKubeRequests(port));
    const passes = (await reconciles(port)) - reconciled;
    // Each run polls every 3 s: the window holds several reconciles of every run.
    assert.ok(passes >= RUNS * 3, `only ${passes} reconciles in the window`);
    const byResource = (resource: string) =>
      [...delta].filter(([k]) => k.endsWith(` ${resource}`) && !k.startsWith("WATCH "));
    for (const resource of ["continualclipruns", "jobs", "pods", "configmaps", "events", "services"]) {
      assert.deepEqual(
        byResource(resource),
        [],
        `${resource}: ${JSON.stringify(byResource(resource))} during ${passes} reconciles`,
      );
    }
    // Idle runs read no document from S3: nothing changed, and no round trains (no progress.json read).
    assert.equal((await s3Gets(port)) - gets, 0, `S3 GETs by idle runs during ${passes} reconciles`);
    // The one Secret all runs share is read again at most once per SECRET_TTL_MS (30 s).
    const secretReads = byResource("secrets").reduce((n, [, v]) => n + v, 0);
    assert.ok(secretReads <= 1, `${secretReads} Secret reads during ${passes} reconciles`);
  } finally {
    await op.stop();
    kubectlOk(["delete", "namespace", ns, "--wait=false"]);
  }
});
