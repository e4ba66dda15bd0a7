// Issue 21, "Done when": a seeded fault-injection run. One run trains through at least 8 rounds
// (slices landing while it runs) while faults are injected at random: kill -9 of the operator,
// MinIO restarts, bursts of S3 503s and connection resets on chosen keys (a proxy in front of MinIO:
// test/support/s3-proxy.ts), kube-apiserver restarts, and trainer pods killed. Then, with the faults
// stopped, it checks what must hold whatever happened: no slice lost or trained out of order, no twin
// Jobs, no promotion of an unevaluated or failing round, and the alias and ConfigMap on the newest
// passing round.
//
//   TICCLIP_FAULT_SEED=<n>     replays a run's choices (the seed is printed at the start and the end)
//   TICCLIP_FAULT_ROUNDS=<n>   rounds to train (8 by default: a few minutes; more on demand)
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { createHash } from "node:crypto";
import path from "node:path";
import { GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { REPO_ROOT, getRun, kubectl, kubectlOk, waitFor } from "../support/cluster.ts";
import {
  OPERATOR_IMAGE,
  createBucket,
  localRunManifest,
  runRounds,
  startOperator,
  writeSlices,
  type Proc,
  startLocalRun,
} from "../support/local-run.ts";
import { seededRandom } from "../../operator/report/summary.ts";
import { faultProxy, type Fault, type FaultProxy } from "../support/s3-proxy.ts";
import { s3Client } from "../support/s3.ts";

const SEED = Number(process.env.TICCLIP_FAULT_SEED || Math.floor(Math.random() * 2 ** 31));
const ROUNDS = Math.max(8, Number(process.env.TICCLIP_FAULT_ROUNDS ?? 8));
const STATE = process.env.TICCLIP_STATE_DIR ?? path.join(REPO_ROOT, ".local", "cluster");

let ns = "";
let executor: Proc;
let operator: Proc | undefined;
let proxy: FaultProxy;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const operatorArgs = ["--leader-elect", "false", "--evaluator-image", OPERATOR_IMAGE, "--s3-timeout-seconds", "5"];

before(async () => {
  console.log(`fault injection: seed ${SEED}, ${ROUNDS} rounds (replay with TICCLIP_FAULT_SEED=${SEED})`);
  proxy = await faultProxy();
  ({ ns, executor } = startLocalRun("faults", { executor: {} }));
  operator = startOperator([ns], operatorArgs);
});
after(async () => {
  await operator?.stop("SIGKILL");
  await executor?.stop();
  await proxy?.close();
});

/** Kills one of this test's local cluster processes by the pid its script recorded, and starts it again. */
async function restartClusterPart(name: "minio" | "kube-apiserver"): Promise<void> {
  const pidFile = path.join(STATE, `${name}.pid`);
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
  // SIGKILL is asynchronous: until the process is gone (or a zombie, which holds no socket) its port
  // is still bound, and a new one started now fails with "address already in use".
  await waitFor(`${name} (pid ${pid}) to exit`, async () => !holdsResources(pid), 30_000);
  // A killed process can linger as a zombie where nothing reaps it, and dev/cluster.sh would take it
  // for running: drop its pid file, then start what is not running and wait until it is healthy.
  rmSync(pidFile, { force: true });
  // Asynchronously: the S3 proxy lives in this process and must keep serving meanwhile.
  const up = spawn("bash", [path.join(REPO_ROOT, "dev/cluster.sh"), "up"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  up.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number | null>((resolve) => up.once("exit", resolve));
  if (code !== 0) throw new Error(`dev/cluster.sh up failed: ${stderr.slice(-2000)}`);
}

/** Whether a process still runs (a zombie, state Z, has released its memory and sockets). */
function holdsResources(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** The pid of a trainer process of this run's round, if one runs now (the executor's child). */
function trainerPid(bucket: string): number | undefined {
  const res = spawnSync("pgrep", ["-f", `ticclip_trainer train --plan s3://${bucket}/`], { encoding: "utf8" });
  return res.stdout.trim().split("\n").filter(Boolean).map(Number)[0];
}

async function getJson(bucket: string, key: string): Promise<any> {
  const out = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return JSON.parse(await out.Body!.transformToString());
}

async function keys(bucket: string, prefix: string): Promise<string[]> {
  const out: string[] = [];
  let token: string | undefined;
  do {
    const page = await s3Client().send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) }),
    );
    for (const o of page.Contents ?? []) if (o.Key) out.push(o.Key);
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return out;
}

async function sha256Of(bucket: string, key: string): Promise<string> {
  const out = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return createHash("sha256")
    .update(await out.Body!.transformToByteArray())
    .digest("hex");
}

test(`a run survives random faults through ${ROUNDS} rounds: nothing lost, reordered, doubled or wrongly promoted`, async (t) => {
  t.diagnostic(`seed ${SEED}`);
  const random = seededRandom(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const data = await createBucket("faults-data");
  const runs = await createBucket("faults-runs");
  const models = await createBucket("faults-models");
  const slices = Array.from({ length: ROUNDS }, (_, i) => String(2016 + i));
  const m = localRunManifest({
    namespace: ns,
    name: "chaos",
    dataBucket: data,
    runsBucket: runs,
    spec: {
      trainer: { backoffLimit: 6 },
      strategy: { maxAttemptsPerSlice: 6 },
      // A round that regresses on the promoted model is Rejected: some rounds fail their gate.
      evaluation: { gates: [{ metric: "retrieval.id.meanRecallAt1", maxRegression: 0.02 }] },
      promotion: { mode: "Auto", s3: { bucket: models, prefix: "clip/" }, configMapName: "chaos-model" },
    },
  });
  m.spec.source.s3.endpoint = proxy.endpoint;
  kubectlOk(["create", "-f", "-"], JSON.stringify(m));

  // Keys whose requests a burst fails: slice manifests and markers, round documents, the promotion
  // prefix (versions, alias), and whole listings.
  const targets: [string, RegExp][] = [
    ["slice manifests", new RegExp(`^GET /${data}/slices/[^/]+/(manifest\\.json|_SUCCESS)$`)],
    ["round plans", new RegExp(`^(GET|PUT) /${runs}/chaos/rounds/\\d+/plan\\.json$`)],
    ["eval.json and verdict.json", new RegExp(`^(GET|PUT) /${runs}/chaos/rounds/\\d+/(eval|verdict)\\.json$`)],
    ["checkpoints", new RegExp(`^(GET|PUT) /${runs}/chaos/rounds/\\d+/(checkpoint\\.pt|partial/.*)$`)],
    ["version copies", new RegExp(`^PUT /${models}/clip/v\\d+/`)],
    ["the alias", new RegExp(`^(GET|PUT) /${models}/clip/production\\.json$`)],
    ["listings", new RegExp(`^GET /(${data}|${runs}|${models})/?$`)],
  ];
  const injected = new Map<string, number>();
  const count = (what: string) => injected.set(what, (injected.get(what) ?? 0) + 1);
  const killedTrainers = new Set<number>();

  let landed = 0;
  const land = (n: number) => {
    const ids = slices.slice(landed, landed + n);
    if (ids.length) writeSlices(data, ids);
    landed += ids.length;
  };
  land(2);
  const done = () => runRounds(ns, "chaos").filter((r) => ["Passed", "Promoted", "Rejected"].includes(r.phase));
  const deadline = Date.now() + ROUNDS * 120_000;
  while (done().length < ROUNDS) {
    assert.ok(Date.now() < deadline, `only ${done().length} of ${ROUNDS} rounds within the time (seed ${SEED})`);
    await sleep(1000 + Math.floor(random() * 4000));
    // Slices keep landing while the run goes on, ahead of the rounds.
    if (landed < slices.length && landed - done().length < 3) land(1);
    const fault = pick(["operator", "operator", "minio", "burst", "burst", "burst", "apiserver", "trainer", "none"]);
    switch (fault) {
      case "operator": {
        await operator?.stop("SIGKILL");
        operator = startOperator([ns], operatorArgs);
        count("operator kill -9");
        break;
      }
      case "minio": {
        await restartClusterPart("minio");
        count("MinIO kill -9 and restart");
        break;
      }
      case "apiserver": {
        await restartClusterPart("kube-apiserver");
        count("kube-apiserver kill -9 and restart");
        break;
      }
      case "burst": {
        const [what, match] = pick(targets);
        const kind: Fault = pick(["SlowDown", "SlowDown", "InternalError", "Reset"]);
        const heal = proxy.add({ match, fault: kind });
        await sleep(2000 + Math.floor(random() * 6000));
        heal();
        count(`${kind} burst on ${what}`);
        break;
      }
      case "trainer": {
        // At most one kill per trainer process, well within backoffLimit: a crash, not a lost slice.
        const pid = trainerPid(runs);
        if (pid && !killedTrainers.has(pid)) {
          killedTrainers.add(pid);
          try {
            process.kill(pid, "SIGKILL");
            count("trainer pod kill -9");
          } catch {
            // finished meanwhile
          }
        }
        break;
      }
    }
  }
  proxy.clear();
  const summary = [...injected].map(([k, v]) => `${k}: ${v}`).join("; ");
  console.log(`fault injection: seed ${SEED}, survived ${summary}`);
  t.diagnostic(`faults survived: ${summary}`);

  // Faults off: the run must settle on the same truths whatever happened.
  const rounds = await waitFor(
    "the run settled",
    () => {
      const r = runRounds(ns, "chaos");
      const active = (getRun(ns, "chaos")?.status as { currentRound?: unknown } | undefined)?.currentRound;
      return !active && r.length >= ROUNDS ? r : undefined;
    },
    240_000,
    1000,
  );
  const trained = rounds.filter((r) => r.phase !== "Failed");
  // No slice lost, none trained twice, all in order.
  assert.deepEqual(
    trained.flatMap((r) => r.slices),
    slices.slice(0, trained.flatMap((r) => r.slices).length),
    `slices in order, none twice (seed ${SEED})`,
  );
  assert.ok(trained.length >= ROUNDS, `${trained.length} rounds trained (seed ${SEED})`);
  const invalid = (getRun(ns, "chaos")?.status as { slices?: { invalid?: unknown[] } } | undefined)?.slices?.invalid;
  assert.equal(invalid, undefined, `no slice invalid (seed ${SEED}): ${JSON.stringify(invalid)}`);
  // No twin Jobs: one trainer Job per round folder.
  const jobs = JSON.parse(
    kubectlOk(["get", "jobs", "-n", ns, "-l", "ticclip.dev/run=chaos,ticclip.dev/component=trainer", "-o", "json"]),
  ).items as { metadata: { labels: Record<string, string> } }[];
  const perRound = new Map<string, number>();
  for (const j of jobs) {
    const r = j.metadata.labels["ticclip.dev/round"]!;
    perRound.set(r, (perRound.get(r) ?? 0) + 1);
  }
  assert.ok(
    [...perRound.values()].every((n) => n === 1),
    `one trainer Job per round: ${JSON.stringify([...perRound])}`,
  );
  const folders = new Set((await keys(runs, "chaos/rounds/")).map((k) => k.split("/")[2]));
  assert.equal(perRound.size, folders.size, "a Job for every round folder and a folder for every Job");
  // No promotion of an unevaluated or failing round, and every version holds the bytes evaluated.
  const versionKeys = (await keys(models, "clip/")).filter((k) => k.endsWith("/version.json"));
  const versions = await Promise.all(versionKeys.map((k) => getJson(models, k)));
  for (const v of versions) {
    const prefix = `chaos/rounds/${String(v.round).padStart(4, "0")}/`;
    const ev = await getJson(runs, `${prefix}eval.json`);
    const verdict = await getJson(runs, `${prefix}verdict.json`);
    assert.equal(ev.status, "Succeeded", `v${v.version}: round ${v.round} was evaluated`);
    assert.equal(ev.round, v.round);
    assert.equal(verdict.verdict.passed, true, `v${v.version}: round ${v.round} passed its gates`);
    assert.equal(verdict.evaluatedAt, ev.evaluatedAt);
    assert.equal(await sha256Of(models, `clip/v${v.version}/image_encoder.onnx`), ev.candidate.sha256.image);
    assert.equal(await sha256Of(models, `clip/v${v.version}/text_encoder.onnx`), ev.candidate.sha256.text);
  }
  // The alias, the ConfigMap and status.promoted converge on the newest passing round.
  const promotedRounds = rounds.filter((r) => r.phase === "Promoted").map((r) => r.index);
  const newest = Math.max(...promotedRounds);
  assert.ok(promotedRounds.length > 0, "some round passed and was promoted");
  const newestPassing = Math.max(...rounds.filter((r) => ["Promoted", "Passed"].includes(r.phase)).map((r) => r.index));
  assert.equal(newest, newestPassing, "the newest passing round is the promoted one");
  const version = versions.find(
    (v) => v.round === newest && v.sourceUri.endsWith(`/chaos/rounds/${String(newest).padStart(4, "0")}/`),
  );
  assert.ok(version, `round ${newest} has a version`);
  await waitFor(
    "alias, ConfigMap and status on the newest passing round",
    async () => {
      const alias = await getJson(models, "clip/production.json");
      const cm = kubectl(["get", "configmap", "chaos-model", "-n", ns, "-o", "json"]);
      const promoted = (getRun(ns, "chaos")?.status as { promoted?: { version: number } } | undefined)?.promoted;
      return alias.version === version.version &&
        cm.code === 0 &&
        JSON.parse(cm.stdout).data.version === String(version.version) &&
        promoted?.version === version.version
        ? true
        : undefined;
    },
    120_000,
    1000,
  );
});
