// Bounded status (issue 12) on the real kube-apiserver:
// - a run at historyLimit 1000 whose rounds are Latest rounds over 3000 slices each, with the longest
//   names, URIs, reasons and messages, gets the status the controller's own decide() builds, written
//   the way the reconciler writes it (a JSON merge patch of the status subresource), accepted by the
//   CRD's schema, read back whole and under 128 KiB;
// - the operator process itself, over 1000 round folders seeded in MinIO, writes a bounded status.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { type ContinualClipRunStatus, STATUS_LIMITS } from "../../operator/api/continual-clip-run.ts";
import { decide } from "../../operator/controller/decide.ts";
import { mergePatchFor } from "../../operator/controller/reconcile.ts";
import { loadKubeConfig, RunClient, type RawObject } from "../../operator/kube/client.ts";
import { getRun, kubectl, kubectlOk, waitFor } from "../support/cluster.ts";
import { createBucket, localRunManifest, type Proc, startOperator, testNamespace } from "../support/local-run.ts";
import { roundFiles } from "../support/rounds.ts";
import { inParallel, putObject, s3Client } from "../support/s3.ts";
import { longSliceId, WORST_NOW, worstCase } from "../support/worst-status.ts";

const KiB = 1024;
let ns = "";
let runs: RunClient;
let operator: Proc | undefined;
before(() => {
  ns = testNamespace("status");
  runs = new RunClient(loadKubeConfig());
});
after(async () => {
  await operator?.stop();
});

const readRun = (name: string) => JSON.parse(kubectlOk(["get", "ccr", name, "-n", ns, "-o", "json"])) as RawObject;

test("the worst-case status decide() builds is accepted by the API server and read back under 128 KiB", async () => {
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
  assert.deepEqual([status.slices?.invalidCount, status.slices?.failedCount], [5000, 124]);
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

// 1000 rounds in S3, as a long run leaves them: the newest three are Latest rounds over 3000 slices,
// the others one slice each; rounds alternately rejected by their gate (eval.json) and failed
// (failed.json with a 1024-character reason and a 32 KiB message). 30 folders of the source have
// names that are not slice ids. Nothing is left to train or evaluate: the operator only observes,
// judges (writing verdict.json) and writes status.
test("the operator over 1000 rounds in S3 writes a status under 128 KiB that the API server accepts", async () => {
  const data = await createBucket("status-data");
  const artifacts = await createBucket("status-runs");
  const name = "thousand";
  const m = localRunManifest({
    namespace: ns,
    name,
    dataBucket: data,
    runsBucket: artifacts,
    spec: {
      historyLimit: 1000,
      strategy: { roundPolicy: "Latest", maxAttemptsPerSlice: 1 },
      evaluation: { gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0.3 }] },
    },
  });
  const prefix = m.spec.artifacts.s3.prefix;
  const files: [string, string][] = [];
  let givenUp = 0;
  const reason = "Reason".padEnd(1024, "R");
  const message = "trainer: ".padEnd(32 * 1024, "m");
  for (let i = 0; i < 1000; i++) {
    const slices = i >= 997 ? Array.from({ length: 3000 }, (_, j) => longSliceId(`l${i}`, j)) : [longSliceId("r", i)];
    const failed = i % 2 === 1;
    const round = roundFiles(artifacts, prefix, i, {
      run: { namespace: ns, name },
      slices,
      ...(failed ? { trained: false } : { recall: 0.1 }),
    });
    if (failed) {
      // A failed round of several slices is counted against none of them (each is retried alone).
      if (slices.length === 1) givenUp++;
      const failure = { reason, message, generation: 1, failedAt: "2026-01-01T00:00:00Z" };
      round.set(`${prefix}rounds/${String(i).padStart(4, "0")}/failed.json`, JSON.stringify(failure));
    }
    files.push(...round);
  }
  for (let i = 0; i < 30; i++) files.push([`slices/~not-a-slice-${i}/_SUCCESS`, ""]);
  const client = s3Client();
  await inParallel(files, 16, ([key, body]) =>
    putObject(client, key.startsWith("slices/") ? data : artifacts, key, body),
  );

  operator = startOperator([ns]);
  kubectlOk(["create", "-f", "-"], JSON.stringify(m));
  type Status = ContinualClipRunStatus & { rounds: NonNullable<ContinualClipRunStatus["rounds"]> };
  const status = await waitFor(
    "1000 rounds judged or failed",
    () => {
      const s = getRun(ns, name)?.status as Status | undefined;
      const settled =
        s?.rounds?.length === 1000 && s.rounds.every((r) => r.phase === "Rejected" || r.phase === "Failed");
      return settled && s.slices?.invalidCount === 30 ? s : undefined;
    },
    300_000,
    2000,
  );
  const bytes = Buffer.byteLength(JSON.stringify(status));
  assert.ok(bytes <= 128 * KiB, `status is ${bytes} bytes`);
  const newest = status.rounds.at(-1)!;
  assert.deepEqual(
    [newest.index, newest.phase, newest.sliceCount, newest.slices?.length, newest.firstSlice],
    [999, "Failed", 3000, 10, longSliceId("l999", 0)],
  );
  assert.equal(newest.reason?.length, STATUS_LIMITS.reason);
  assert.ok(newest.message?.endsWith("..."));
  assert.deepEqual(status.rounds[0], { index: 0, phase: "Rejected", sliceCount: 1, reason: "GatesFailed" });
  assert.equal(status.slices?.invalid?.length, 10);
  assert.equal(status.slices?.failedCount, givenUp, "every slice of a failed round of one slice is given up");
  assert.equal(status.slices?.failed?.length, 10);
});
