// The operator under the real world's failures: kill -9 loops, two replicas, crashing and
// preempted trainers, suspend, wiped status. Real kube-apiserver, Job controller, MinIO, trainer.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { REPO_ROOT, getRun, kubectlOk, waitFor } from "../support/cluster.ts";
import {
  createBucket,
  localRunManifest,
  roundsTrained,
  startOperator,
  writeSlices,
  type Proc,
  startLocalRun,
} from "../support/local-run.ts";
import { s3Client } from "../support/s3.ts";

let ns = "";
let executor: Proc;
const stopLater: Proc[] = [];

const trainedCount = (name: string, n: number, timeoutMs = 300_000) => roundsTrained(ns, name, n, timeoutMs);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const jobsOf = (run: string) =>
  JSON.parse(
    kubectlOk(["get", "jobs", "-n", ns, "-l", `ticclip.dev/run=${run},ticclip.dev/component=trainer`, "-o", "json"]),
  ).items as any[];

async function newRun(name: string, spec: Record<string, any> = {}) {
  const data = await createBucket(`${name}-data`);
  const runs = await createBucket(`${name}-runs`);
  kubectlOk(
    ["create", "-f", "-"],
    JSON.stringify(localRunManifest({ namespace: ns, name, dataBucket: data, runsBucket: runs, spec })),
  );
  return { data, runs };
}

before(() => {
  ({ ns, executor } = startLocalRun("chaos", { executor: {} }));
});
after(async () => {
  for (const p of stopLater) await p.stop("SIGKILL");
  await executor?.stop();
});

test("kill -9 the operator 20+ times during a 3-round run: no twin Job, no skipped slice, same history", async () => {
  const { data, runs } = await newRun("chaos", {});
  writeSlices(data, ["2016", "2017", "2018"]);
  let kills = 0;
  // Leader election is off here: a killed leader's lease would make every restart wait 15 s.
  while (kills < 22) {
    const op = startOperator([ns], ["--leader-elect", "false"]);
    await sleep(300 + Math.floor(Math.random() * 2500));
    await op.stop("SIGKILL");
    kills++;
  }
  const last = startOperator([ns], ["--leader-elect", "false"]);
  stopLater.push(last);
  const r = await trainedCount("chaos", 3);
  assert.deepEqual(
    r.map((x) => [x.index, x.slices, x.phase]),
    [
      [0, ["2016"], "Passed"],
      [1, ["2017"], "Passed"],
      [2, ["2018"], "Passed"],
    ],
  );
  assert.deepEqual(
    r.map((x) => x.initCheckpoint ?? null),
    [null, `s3://${runs}/chaos/rounds/0000/checkpoint.pt`, `s3://${runs}/chaos/rounds/0001/checkpoint.pt`],
  );
  const jobs = jobsOf("chaos");
  assert.equal(jobs.length, 3, "exactly one Job per round");
  assert.deepEqual(jobs.map((j) => j.metadata.name).sort(), [
    "chaos-r0000-train",
    "chaos-r0001-train",
    "chaos-r0002-train",
  ]);
  await last.stop();
});

test("two replicas: only the leader acts; kill it and the standby continues within the lease time", async () => {
  const a = startOperator([ns], ["--identity", "replica-a"]);
  await waitFor("a leads", () => readFileSync(a.logFile, "utf8").includes("became leader"), 30_000);
  const b = startOperator([ns], ["--identity", "replica-b"]);
  stopLater.push(a, b);
  await sleep(5000);
  assert.ok(!readFileSync(b.logFile, "utf8").includes("became leader"), "b stays standby while a renews");
  const { data } = await newRun("ha", {});
  writeSlices(data, ["2016"]);
  await trainedCount("ha", 1);
  assert.ok(!readFileSync(b.logFile, "utf8").includes("job created"), "the standby created nothing");
  await a.stop("SIGKILL");
  const killedAt = Date.now();
  await waitFor("b leads", () => readFileSync(b.logFile, "utf8").includes("became leader"), 30_000, 200);
  const takeover = Date.now() - killedAt;
  assert.ok(takeover < 15_000 + 2_000 + 3_000, `takeover after ${takeover} ms`);
  writeSlices(data, ["2017"]);
  await trainedCount("ha", 2);
  await b.stop();
});

test("a crashed trainer is retried and a preempted one resumes without spending a retry", async () => {
  const op = startOperator([ns], ["--leader-elect", "false"]);
  stopLater.push(op);
  // A bigger budget so the round lasts long enough to interfere with it.
  const { data, runs } = await newRun("flaky", { strategy: { samplesPerRound: 4096 } });
  writeSlices(data, ["2016"]);
  const planUri = `s3://${runs}/flaky/rounds/0000/plan.json`;
  // Interfere only once the running pod's trainer is past start-up and into its training steps.
  const trainingSteps = () =>
    waitFor(
      "training steps logged",
      () => {
        const pods = JSON.parse(
          kubectlOk([
            "get",
            "pods",
            "-n",
            ns,
            "-l",
            "ticclip.dev/run=flaky",
            "--field-selector",
            "status.phase=Running",
            "-o",
            "json",
          ]),
        ).items;
        if (pods.length !== 1) return undefined;
        const file = path.join(REPO_ROOT, ".local/executor", `${ns}_${pods[0].metadata.name}.log`);
        return existsSync(file) && /step \d+\/\d+/.test(readFileSync(file, "utf8")) ? true : undefined;
      },
      180_000,
      500,
    );
  const trainerPid = () => {
    const res = spawnSync("pgrep", ["-f", `ticclip_trainer train --plan ${planUri}`], { encoding: "utf8" });
    return res.stdout.trim().split("\n").filter(Boolean).map(Number)[0];
  };
  // 1) Crash: SIGKILL the trainer process (as an OOM kill would). The Job retries (backoffLimit 2).
  const pid1 = await waitFor("trainer running", trainerPid, 120_000, 200);
  await trainingSteps();
  process.kill(pid1, "SIGKILL");
  await waitFor("a failed pod counted", () => (jobsOf("flaky")[0]?.status?.failed ?? 0) >= 1 || undefined, 60_000, 500);
  // 2) Preemption: the replacement pod is deleted (a plain `kubectl delete pod`, which sets no
  //    DisruptionTarget; an Eviction's is covered by progress.test.ts). It is SIGTERMed, checkpoints
  //    and exits 143, and the Job ignores that failure (podFailurePolicy), so failed stays at 1.
  const pid2 = await waitFor(
    "replacement trainer running",
    () => {
      const p = trainerPid();
      return p && p !== pid1 ? p : undefined;
    },
    120_000,
    200,
  );
  await trainingSteps();
  const pod = JSON.parse(
    kubectlOk([
      "get",
      "pods",
      "-n",
      ns,
      "-l",
      "ticclip.dev/run=flaky",
      "--field-selector",
      "status.phase=Running",
      "-o",
      "json",
    ]),
  ).items[0];
  assert.ok(pod, "a running trainer pod");
  kubectlOk(["delete", "pod", pod.metadata.name, "-n", ns, "--wait=false"]);
  await waitFor("preempted trainer gone", () => (trainerPid() !== pid2 ? true : undefined), 60_000, 200);
  await trainedCount("flaky", 1, 400_000);
  // _SUCCESS lands before the pod exits: wait for the Job controller's verdict.
  const job = await waitFor(
    "Job complete",
    () => {
      const j = jobsOf("flaky")[0];
      return j?.status?.conditions?.some(
        (c: { type: string; status: string }) => c.type === "Complete" && c.status === "True",
      )
        ? j
        : undefined;
    },
    60_000,
    500,
  );
  assert.equal(job.status.failed, 1, "the crash counted, the deleted pod did not");
  assert.equal(job.status.succeeded, 1);
  const res = await s3Client().send(
    new GetObjectCommand({ Bucket: runs, Key: "flaky/rounds/0000/train_summary.json" }),
  );
  const summary = JSON.parse(await res.Body!.transformToString());
  assert.ok(summary.resumes.length >= 1, "the last attempt resumed from the intra-round checkpoint");
  assert.equal(summary.samplesSeen, 4096, "exactly the budget across attempts");
  await op.stop();
});

test("suspend holds new rounds, resume starts them; a wiped status is rebuilt", async () => {
  const op = startOperator([ns], ["--leader-elect", "false"]);
  stopLater.push(op);
  const { data } = await newRun("pause", {});
  writeSlices(data, ["2016"]);
  const before = await trainedCount("pause", 1);
  kubectlOk(["patch", "ccr", "pause", "-n", ns, "--type", "merge", "-p", '{"spec":{"suspend":true}}']);
  await waitFor("suspended", () => (getRun(ns, "pause")?.status?.phase === "Suspended" ? true : undefined), 30_000);
  writeSlices(data, ["2017"]);
  await sleep(8000); // several poll intervals
  assert.equal(jobsOf("pause").length, 1, "no new Job while suspended");
  kubectlOk(["patch", "ccr", "pause", "-n", ns, "--type", "merge", "-p", '{"spec":{"suspend":false}}']);
  const after = await trainedCount("pause", 2);
  assert.deepEqual(
    after.map((r) => r.slices),
    [["2016"], ["2017"]],
  );
  // Wipe status: the next reconcile rebuilds the same round history from S3 markers and Jobs.
  kubectlOk(["patch", "ccr", "pause", "-n", ns, "--subresource=status", "--type=merge", "-p", '{"status":null}']);
  const rebuilt = await trainedCount("pause", 2);
  assert.deepEqual(
    rebuilt.map((r) => [r.index, r.slices, r.phase, r.initCheckpoint ?? null]),
    after.map((r) => [r.index, r.slices, r.phase, r.initCheckpoint ?? null]),
  );
  assert.equal(before.length, 1);
  await op.stop();
});
