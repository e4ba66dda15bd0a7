// Bounded status (issue 12) on the real kube-apiserver: a run at historyLimit 1000 whose rounds are
// Latest rounds over 3000 slices each, with the longest names, URIs, reasons and messages, gets the
// status the controller's own decide() builds, written the way the reconciler writes it (a JSON merge
// patch of the status subresource), accepted by the CRD's schema, read back whole and under 128 KiB.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import type { ContinualClipRunStatus } from "../../operator/api/continual-clip-run.ts";
import { decide } from "../../operator/controller/decide.ts";
import { mergePatchFor } from "../../operator/controller/reconcile.ts";
import { loadKubeConfig, RunClient, type RawObject } from "../../operator/kube/client.ts";
import { applyCrds, createNamespace, kubectl, kubectlOk } from "../support/cluster.ts";
import { WORST_NOW, worstCase } from "../support/worst-status.ts";

const KiB = 1024;
let ns = "";
let runs: RunClient;
before(() => {
  applyCrds();
  ns = createNamespace("status");
  runs = new RunClient(loadKubeConfig());
});

const readRun = (name: string) => JSON.parse(kubectlOk(["get", "ccr", name, "-n", ns, "-o", "json"])) as RawObject;

test("the largest status a run can have is accepted by the API server and read back under 128 KiB", async () => {
  const { run, observed } = worstCase({ name: "worst-status", namespace: ns });
  kubectlOk(["create", "-f", "-"], JSON.stringify({ ...run, metadata: { name: run.metadata.name, namespace: ns } }));
  const stored = readRun(run.metadata.name);
  assert.equal((stored.spec as { historyLimit: number }).historyLimit, 1000);

  const decision = decide(stored, observed, WORST_NOW);
  assert.ok(decision.status);
  const patch = mergePatchFor(stored.status, decision.status) as ContinualClipRunStatus;
  assert.equal(await runs.patchStatus(ns, run.metadata.name, patch), true);

  const back = readRun(run.metadata.name);
  const status = back.status as ContinualClipRunStatus;
  const bytes = Buffer.byteLength(JSON.stringify(status));
  assert.ok(bytes <= 128 * KiB, `status is ${bytes} bytes`);
  assert.deepEqual(status, JSON.parse(JSON.stringify(decision.status)), "stored as written, nothing pruned");
  assert.equal(status.rounds?.length, 1000);
  assert.deepEqual(
    [status.rounds?.at(-1)?.sliceCount, status.rounds?.at(-1)?.slices?.length, status.rounds?.[0]?.slices],
    [3000, 10, undefined],
  );
  assert.deepEqual([status.slices?.invalidCount, status.slices?.failedCount], [5000, 3000]);
  // The next reconcile reads the bounded status back and has nothing to change.
  assert.equal(decide(back, observed, WORST_NOW).status, undefined);
  // kubectl's printer columns still work on it.
  const wide = kubectlOk(["get", "ccr", run.metadata.name, "-n", ns, "-o", "wide"]);
  assert.match(wide, /Training/);
});

test("the API server refuses a status beyond the bounds, naming the field", () => {
  const { run } = worstCase({ name: "too-many-slices", namespace: ns });
  kubectlOk(["create", "-f", "-"], JSON.stringify({ ...run, metadata: { name: run.metadata.name, namespace: ns } }));
  const round = {
    index: 0,
    phase: "Training",
    replay: "CumulativeAll",
    slices: Array.from({ length: 11 }, (_, i) => String(2000 + i)),
  };
  const patch = JSON.stringify({ status: { rounds: [round] } });
  const r = kubectl(["patch", "ccr", run.metadata.name, "-n", ns, "--subresource=status", "--type=merge", "-p", patch]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /status\.rounds\[0\]\.slices: Too many: 11: must have at most 10 items/);
});
