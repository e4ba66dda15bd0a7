// A round seen while it trains (issue 26), against the real parts: the trainer (tiny CPU model) run by
// the local executor writes progress.json, the operator shows it in status and in `kubectl get ccr`,
// and a trainer stopped with SIGSTOP is caught as TrainerStalled (and, with restartOnStall, evicted
// and resumed from its intra-round checkpoint without spending the Job's backoffLimit).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { getRun, kubectlOk, requireEnv, waitFor } from "../support/cluster.ts";
import {
  createBucket,
  localRunManifest,
  roundsTrained,
  writeSlices,
  type Proc,
  startLocalRun,
  stopAll,
} from "../support/local-run.ts";
import { s3Client } from "../support/s3.ts";

let ns = "";
let executor: Proc;
let operator: Proc;

type Progress = { phase?: string; percent?: string; samplesDone?: number; samplesTotal?: number; eta?: string };
type Condition = { type: string; status: string; reason: string; message: string };
const status = (name: string) =>
  getRun(ns, name)?.status as
    | { currentRound?: { index: number; progress?: Progress }; conditions?: Condition[] }
    | undefined;
const progressOf = (name: string) => status(name)?.currentRound?.progress;
const stalledCondition = (name: string) => status(name)?.conditions?.find((c) => c.type === "TrainerStalled");
const jobsOf = (run: string) =>
  JSON.parse(
    kubectlOk(["get", "jobs", "-n", ns, "-l", `ticclip.dev/run=${run},ticclip.dev/component=trainer`, "-o", "json"]),
  ).items as any[];
const eventsOf = (reason: string) =>
  JSON.parse(kubectlOk(["get", "events", "-n", ns, "--field-selector", `reason=${reason}`, "-o", "json"]))
    .items as Array<{ message: string; type: string }>;

async function newRun(name: string, spec: Record<string, any>) {
  const data = await createBucket(`${name}-data`);
  const runs = await createBucket(`${name}-runs`);
  kubectlOk(
    ["create", "-f", "-"],
    JSON.stringify(localRunManifest({ namespace: ns, name, dataBucket: data, runsBucket: runs, spec })),
  );
  writeSlices(data, ["2016"]);
  return { data, runs, planUri: `s3://${runs}/${name}/rounds/0000/plan.json` };
}

/** The trainer process of a plan (the local executor runs it as `python -m ticclip_trainer train --plan <uri>`). */
const trainerPid = (planUri: string) =>
  spawnSync("pgrep", ["-f", `ticclip_trainer train --plan ${planUri}`], { encoding: "utf8" })
    .stdout.trim()
    .split("\n")
    .filter(Boolean)
    .map(Number)[0];

async function summaryOf(bucket: string, name: string): Promise<any> {
  const res = await s3Client().send(
    new GetObjectCommand({ Bucket: bucket, Key: `${name}/rounds/0000/train_summary.json` }),
  );
  return JSON.parse(await res.Body!.transformToString());
}

/** Waits until the trainer has reported training steps, as status shows them. */
const trainingSeen = (name: string, timeoutMs = 180_000) =>
  waitFor(
    `${name}: training progress in status`,
    () => {
      const p = progressOf(name);
      return p?.phase === "training" && (p.samplesDone ?? 0) > 0 ? p : undefined;
    },
    timeoutMs,
    250,
  );

before(() => {
  // The trainer reports every second and the operator reads at most every second: a round of a
  // minute shows many reports.
  ({ ns, executor, operator } = startLocalRun("progress", {
    executor: { trainerEnv: { TICCLIP_PROGRESS_SECONDS: "1" } },
    operator: ["--leader-elect", "false", "--progress-interval", "1s"],
  }));
});
after(() => stopAll(operator, executor));

/**
 * Every status the API server stores for a run, as a watch sees it: "<phase> <percent>" of its
 * progress, in order. Polling can miss a state that lasts one reconcile (100% while the round is
 * evaluated); a watch sees each write.
 */
function watchProgress(name: string): { lines: () => string[]; stop: () => void } {
  const template = `{.metadata.name} {.status.currentRound.progress.phase} {.status.currentRound.progress.percent}{"\\n"}`;
  const child = spawn(
    requireEnv("KUBECTL"),
    ["--kubeconfig", requireEnv("KUBECONFIG"), "get", "ccr", "-n", ns, "-w", "-o", `jsonpath=${template}`],
    { stdio: ["ignore", "pipe", "ignore"] },
  );
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  return {
    lines: () =>
      out
        .split("\n")
        .filter((l) => l.startsWith(`${name} `))
        .map((l) => l.slice(name.length + 1).trim()),
    stop: () => child.kill(),
  };
}

test("progress appears in status and in kubectl get ccr while a round trains, and reaches 100%", async () => {
  const watch = watchProgress("prog");
  const { runs } = await newRun("prog", { strategy: { samplesPerRound: 4096 } });
  const seen: Progress[] = [];
  let columns: { plain: string; wide: string } | undefined;
  await waitFor(
    "prog: round trained, its progress followed",
    () => {
      const p = progressOf("prog");
      if (p && JSON.stringify(seen.at(-1)) !== JSON.stringify(p)) seen.push(p);
      const percent = Number(p?.percent?.replace("%", ""));
      if (!columns && p?.phase === "training" && percent > 0 && percent < 100) {
        columns = {
          plain: kubectlOk(["get", "ccr", "prog", "-n", ns]),
          wide: kubectlOk(["get", "ccr", "prog", "-n", ns, "-o", "wide"]),
        };
      }
      return (getRun(ns, "prog")?.status as { rounds?: Array<{ phase: string }> })?.rounds?.some(
        (r) => r.phase === "Passed",
      )
        ? true
        : undefined;
    },
    300_000,
    200,
  );
  const mid = seen.find((p) => p.phase === "training" && p.percent !== "0%" && p.percent !== "100%");
  assert.ok(mid, `a report between 0% and 100% while training; saw ${JSON.stringify(seen)}`);
  assert.equal(mid.samplesTotal, 4096);
  assert.ok(mid.eta, "an ETA from the recent rate");
  watch.stop();
  const watched = watch.lines();
  // 100% once every sample is seen: while exporting, and "done" if the trained round is still current.
  assert.ok(
    watched.some((l) => l.endsWith(" 100%")),
    `progress reaches 100%; the watch saw ${watched.join(", ")}`,
  );
  const watchedPercents = watched.map((l) => Number(/ (\d+)%$/.exec(l)?.[1] ?? -1)).filter((n) => n >= 0);
  assert.deepEqual(
    watchedPercents,
    [...watchedPercents].sort((a, b) => a - b),
    `percent never goes back; the watch saw ${watched.join(", ")}`,
  );
  const percents = seen.map((p) => p.samplesDone ?? 0);
  assert.deepEqual(
    percents,
    [...percents].sort((a, b) => a - b),
    "samples done never go back",
  );
  // kubectl get ccr: a PROGRESS column with the percent; -o wide adds ETA.
  assert.ok(columns, "kubectl get ccr was run while the round trained");
  const [header, row] = columns.plain.trim().split("\n");
  assert.match(header!, /\bROUND\s+PROGRESS\b/);
  assert.match(row!, /\s\d{1,3}%\s/);
  assert.match(columns.wide.split("\n")[0]!, /\bETA\b/);
  // The report's curves: the trainer kept its reports in train_summary.json.
  const history = (await summaryOf(runs, "prog")).progressHistory as Array<{ samplesDone: number; loss: number }>;
  assert.ok(history.length >= 2, "progressHistory holds the training reports");
  const done = history.map((h) => h.samplesDone);
  assert.deepEqual(
    done,
    [...done].sort((a, b) => a - b),
  );
  assert.ok(done.at(-1)! <= 4096 && history.every((h) => h.loss > 0));
});

test("a trainer stopped with SIGSTOP past spec.trainer.stallTimeout gets TrainerStalled; with restartOnStall its pod is evicted, resumes from its checkpoint and completes, its backoffLimit unspent", async () => {
  // One run covers both: the stall is caught (condition and Event), then acted on. The trainer is
  // continued once the eviction is under way, so it takes the SIGTERM the eviction sends, saves its
  // intra-round checkpoint and exits; the Job's replacement pod resumes from it. (A trainer that stays
  // wedged is SIGKILLed after the grace period and resumes from its last periodic checkpoint: the
  // same path as any preemption, test/integration/rounds-resilience.test.ts.)
  const budget = 8192;
  const { runs, planUri } = await newRun("stall", {
    strategy: { samplesPerRound: budget },
    trainer: { stallTimeout: "1m", restartOnStall: true, terminationGracePeriodSeconds: 60 },
  });
  await trainingSeen("stall");
  const pid = await waitFor("stall: trainer process", () => trainerPid(planUri), 60_000, 200);
  process.kill(pid, "SIGSTOP");
  try {
    const c = await waitFor(
      "stall: TrainerStalled",
      () => {
        const cond = stalledCondition("stall");
        return cond?.status === "True" ? cond : undefined;
      },
      180_000,
      500,
    );
    assert.equal(c.reason, "NoProgress");
    assert.match(c.message, /^round 0: \d+ of 8192 samples \(training\)/);
    await waitFor(
      "stall: the eviction said so",
      () => (eventsOf("TrainerRestarted").some((e) => /evicting the pods of Job /.test(e.message)) ? true : undefined),
      60_000,
      500,
    );
    assert.ok(
      eventsOf("TrainerStalled").some((e) => e.type === "Warning" && /^round 0: \d+ of 8192 samples/.test(e.message)),
      "a TrainerStalled Warning Event naming the round",
    );
  } finally {
    process.kill(pid, "SIGCONT");
  }
  const replacement = await waitFor(
    "stall: a replacement trainer",
    () => {
      const p = trainerPid(planUri);
      return p && p !== pid ? p : undefined;
    },
    300_000,
    500,
  );
  assert.notEqual(replacement, pid);
  await roundsTrained(ns, "stall", 1, 600_000);
  assert.notEqual(stalledCondition("stall")?.status, "True", "the replacement's progress ended the stall");
  const job = await waitFor(
    "stall: Job complete",
    () => {
      const j = jobsOf("stall")[0];
      return j?.status?.conditions?.some((c: Condition) => c.type === "Complete" && c.status === "True")
        ? j
        : undefined;
    },
    60_000,
    500,
  );
  assert.equal(job.status.failed ?? 0, 0, "the evicted pod did not count against backoffLimit");
  const summary = await summaryOf(runs, "stall");
  assert.ok(summary.resumes.length >= 1 && summary.resumes[0].step > 0, "the replacement resumed from the checkpoint");
  assert.equal(summary.samplesSeen, budget, "exactly the budget across both pods");
});
