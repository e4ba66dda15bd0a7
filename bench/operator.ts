import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import {
  applyCrds,
  createNamespace,
  kubectl,
  kubectlOk,
  operatorKubeRequests,
  requestDelta,
  requireEnv,
  waitFor,
} from "../test/support/cluster.ts";
import { createS3Secret, localRunManifest, startOperator, type Proc } from "../test/support/local-run.ts";
import { createBucket, inParallel, putObject, s3Client } from "../test/support/s3.ts";
import { putSlice } from "../test/integration/data/slices.ts";

const RUNS = Number(process.env.BENCH_RUNS ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20);
const LATENCY_SAMPLES = Number(process.env.BENCH_LATENCY_SAMPLES ?? 12);
const WINDOW_S = Number(process.env.BENCH_WINDOW_SECONDS ?? 120);
const TOKEN = randomBytes(16).toString("hex");
const s3 = s3Client();
const quantile = (xs: number[], q: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil(q * xs.length) - 1)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function jobExists(ns: string, name: string): boolean {
  return kubectlOk(["get", "jobs", "-n", ns, "-o", "name"]).includes(`job.batch/${name}-r0000-train`);
}

async function postEvent(port: number, bucket: string, key: string): Promise<void> {
  const body = JSON.stringify({
    EventName: "s3:ObjectCreated:Put",
    Key: `${bucket}/${key}`,
    Records: [{ eventName: "s3:ObjectCreated:Put", s3: { bucket: { name: bucket }, object: { key } } }],
  });
  const res = await fetch(`http://127.0.0.1:${port}/s3-events`, {
    method: "POST",
    body,
    headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
  });
  if (res.status !== 200) throw new Error(`notification answered ${res.status}`);
}

/**
 * Deletes a bench namespace. Its trainer pods never ran (the bench starts no executor) and keep
 * their Job-tracking finalizer, so without this the namespace controller retries their deletion for
 * as long as the cluster lives, and its pod requests show up in later measurements.
 */
function removeNamespace(ns: string): void {
  kubectlOk(["delete", "jobs", "--all", "-n", ns, "--cascade=orphan", "--wait=false"]);
  for (const pod of kubectlOk(["get", "pods", "-n", ns, "-o", "name"]).split("\n").filter(Boolean)) {
    kubectl(["patch", "-n", ns, pod, "--type=merge", "-p", '{"metadata":{"finalizers":null}}']); // may be gone
  }
  kubectl(["delete", "pods", "--all", "-n", ns, "--grace-period=0", "--force"]);
  kubectlOk(["delete", "namespace", ns, "--wait=false"]);
}

/** Where latency samples run: a namespace, the operator serving it, and its notification port. */
type LatencyTarget = { ns: string; port: number };

async function latency(mode: "notifications" | "polling", target?: LatencyTarget): Promise<number[]> {
  const ns = target?.ns ?? createNamespace(`bench-${mode.slice(0, 5)}`);
  if (!target) createS3Secret(ns);
  const port = target?.port ?? 20000 + Math.floor(Math.random() * 20000);
  const op = target
    ? undefined
    : startOperator([ns], mode === "notifications" ? ["--notifications-address", `127.0.0.1:${port}`] : [], {
        TICCLIP_NOTIFICATION_TOKEN: TOKEN,
      });
  const pollInterval = mode === "notifications" ? "10m" : "10s";
  const out: number[] = [];
  try {
    const data = await createBucket(s3, "bench-lat");
    const runs = await createBucket(s3, "bench-lat-runs");
    for (let i = 0; i < LATENCY_SAMPLES; i++) {
      const name = `lat-${i}`;
      const m = localRunManifest({
        namespace: ns,
        name,
        dataBucket: data,
        runsBucket: runs,
        spec: { source: { pollInterval } },
      });
      m.spec.source.s3.prefix = `${name}/`;
      kubectlOk(["create", "-f", "-"], JSON.stringify(m));
      await waitFor(
        `${name} reconciled`,
        () =>
          kubectlOk(["get", "ccr", name, "-n", ns, "-o", "jsonpath={.status.phase}"]) === "Waiting" ? true : undefined,
        60_000,
        100,
      );
      // A random point within the poll cycle, as slices land in real life.
      await sleep(Math.random() * 3000);
      await putSlice(s3, data, `${name}/`, { id: "2024", shards: [16], complete: false });
      await putObject(s3, data, `${name}/2024/_SUCCESS`);
      const t0 = performance.now();
      if (mode === "notifications") await postEvent(port, data, `${name}/2024/_SUCCESS`);
      await waitFor(`${name} job`, () => (jobExists(ns, name) ? true : undefined), 120_000, 50);
      out.push(performance.now() - t0);
    }
  } finally {
    await op?.stop();
    if (!target) removeNamespace(ns);
  }
  return out;
}

function printLatency(mode: "notifications" | "polling", xs: number[], load: string): void {
  const how = mode === "polling" ? "pollInterval 10s" : "event posted in MinIO's format";
  console.log(
    `_SUCCESS -> Job created, ${mode} (${how}, ${load}, n=${xs.length}): p50 ${quantile(xs, 0.5).toFixed(0)} ms, p95 ${quantile(xs, 0.95).toFixed(0)} ms`,
  );
}

/** The operator's non-watch API requests, by "verb resource". */
function nonWatch(delta: Map<string, number>): Map<string, number> {
  return new Map([...delta].filter(([k]) => !k.startsWith("WATCH ")));
}

type Scrape = Map<string, number>;
async function scrape(port: number): Promise<Scrape> {
  const out: Scrape = new Map();
  for (const line of (await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()).split("\n")) {
    if (line.startsWith("#") || !line) continue;
    const i = line.lastIndexOf(" ");
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}
const sum = (m: Scrape, prefix: string) => [...m].filter(([k]) => k.startsWith(prefix)).reduce((n, [, v]) => n + v, 0);
/** A quantile of the reconcile histogram's increase between two scrapes (the bucket's upper bound). */
function histogramQuantile(before: Scrape, after: Scrape, q: number): string {
  const buckets = [...after]
    .filter(([k]) => k.startsWith("ticclip_reconcile_duration_seconds_bucket{"))
    .map(([k, v]) => ({ le: /le="([^"]+)"/.exec(k)![1]!, n: v - (before.get(k) ?? 0) }));
  const total = buckets.find((b) => b.le === "+Inf")!.n;
  const hit = buckets.find((b) => b.n >= q * total)!;
  return hit.le === "+Inf" ? "> 10 s" : `<= ${Number(hit.le) * 1000} ms`;
}

/** RSS (from /proc) and JS heap used of a running operator, in MiB. */
async function memoryOf(op: Proc, port: number): Promise<{ rss: number; peak: number; heap: number }> {
  const status = readFileSync(`/proc/${op.child.pid}/status`, "utf8");
  const mib = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)![1]) / 1024;
  const heap = (await scrape(port)).get("ticclip_operator_nodejs_heap_size_used_bytes")! / 2 ** 20;
  return { rss: mib("VmRSS"), peak: mib("VmHWM"), heap };
}

async function steadyState(): Promise<void> {
  const ns = createNamespace("bench-steady");
  createS3Secret(ns);
  // What the operator costs with no runs at all, so the per-run figures below are increments.
  const idlePort = 20000 + Math.floor(Math.random() * 20000);
  const idle = startOperator([ns], ["--metrics-address", `127.0.0.1:${idlePort}`]);
  await sleep(20_000);
  const base = await memoryOf(idle, idlePort);
  await idle.stop();
  const data = await createBucket(s3, "bench-st");
  const runsBucket = await createBucket(s3, "bench-st-runs");
  const ids = Array.from({ length: ROUNDS }, (_, i) => String(2000 + i));
  let t = performance.now();
  const runNames = Array.from({ length: RUNS }, (_, i) => `steady-${String(i).padStart(3, "0")}`);
  await inParallel(runNames, 16, async (name) => {
    for (const [i, id] of ids.entries()) {
      await putSlice(s3, data, `${name}/`, { id, shards: [16] });
      const plan = {
        schemaVersion: 1,
        run: { namespace: ns, name },
        round: i,
        newSlices: [id],
        replay: "CumulativeAll",
        model: {
          architecture: "ticclip-tiny",
          initCheckpoint: i
            ? `s3://${runsBucket}/${name}/rounds/${String(i - 1).padStart(4, "0")}/checkpoint.pt`
            : null,
        },
        data: {
          sources: ids.slice(0, i + 1).map((s) => ({
            sliceId: s,
            shards: [{ uri: `s3://${data}/${name}/${s}/shard-00000.tar`, samples: 16 }],
            weight: 1,
            expectedShare: 1 / (i + 1),
          })),
          samples: 256,
        },
        optimizer: { lr: 1e-3, weightDecay: 0.2, warmupSteps: 0, batchSize: 32, precision: "fp32" },
        output: { uri: `s3://${runsBucket}/${name}/rounds/${String(i).padStart(4, "0")}/` },
        checkpointIntervalMinutes: 1,
        seed: i,
        s3: { region: "us-east-1", endpoint: requireEnv("S3_ENDPOINT") },
      };
      const base = `${name}/rounds/${String(i).padStart(4, "0")}/`;
      await putObject(s3, runsBucket, `${base}plan.json`, JSON.stringify(plan));
      await putObject(s3, runsBucket, `${base}checkpoint.pt`, "x");
      await putObject(s3, runsBucket, `${base}_SUCCESS`);
      // An evaluated round (no gates, no promotion): Passed, so nothing is left to do.
      const scores = {
        uri: `s3://${runsBucket}/${base}`,
        architecture: "ticclip-tiny",
        embeddingDim: 32,
        sha256: { image: "-", text: "-" },
        retrieval: [],
        zeroShot: [],
        metrics: {},
        notApplicable: {},
      };
      await putObject(
        s3,
        runsBucket,
        `${base}eval.json`,
        JSON.stringify({
          schemaVersion: 1,
          status: "Succeeded",
          round: i,
          roundUri: scores.uri,
          roundSlices: [id],
          evaluatedAt: "2026-01-01T00:00:00Z",
          k: [1],
          candidate: scores,
          matrix: {
            metric: "meanRecallAt1",
            rounds: [i],
            roundSlices: [[id]],
            slices: [id],
            values: [[null]],
            summary: { id: null, backward: null, forward: null },
          },
          timing: { seconds: 0, imagesEncoded: 0, textsEncoded: 0, executionProvider: "cpu" },
        }),
      );
    }
  });
  console.log(
    `setup: ${RUNS} runs x ${ROUNDS} slices and trained rounds in S3 (${RUNS * ROUNDS * 7} objects) in ${((performance.now() - t) / 1000).toFixed(0)} s`,
  );
  const docs = runNames.map((name) => {
    const m = localRunManifest({
      namespace: ns,
      name,
      dataBucket: data,
      runsBucket,
      spec: { source: { pollInterval: "60s" } },
    });
    m.spec.source.s3.prefix = `${name}/`;
    return JSON.stringify(m);
  });
  kubectlOk(["create", "-f", "-"], `{"apiVersion":"v1","kind":"List","items":[${docs.join(",")}]}`);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const notifyPort = port + 1;
  const start = () =>
    startOperator(
      [ns],
      ["--metrics-address", `127.0.0.1:${port}`, "--notifications-address", `127.0.0.1:${notifyPort}`],
      { TICCLIP_NOTIFICATION_TOKEN: TOKEN },
    );
  let op: Proc = start();
  try {
    t = performance.now();
    await waitFor(
      "every run shows its rounds",
      () => {
        const phases = kubectlOk([
          "get",
          "ccr",
          "-n",
          ns,
          "-o",
          `jsonpath={range .items[*]}{.status.compute.samplesSeen}{"\\n"}{end}`,
        ])
          .trim()
          .split("\n");
        const passed = kubectlOk([
          "get",
          "ccr",
          "-n",
          ns,
          "-o",
          `jsonpath={range .items[*]}{.status.phase}{"\\n"}{end}`,
        ])
          .trim()
          .split("\n");
        return phases.length === RUNS &&
          phases.every((p) => Number(p) === ROUNDS * 256) &&
          passed.every((p) => p === "Waiting")
          ? true
          : undefined;
      },
      900_000,
      2000,
    );
    console.log(
      `operator start to all ${RUNS} runs reconstructed from S3 (${RUNS * ROUNDS} rounds): ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );
    // Settled: each run has read back what its first reconciles wrote (verdicts, the document cache),
    // which happens at its next poll, up to a poll interval after its status showed its rounds.
    t = performance.now();
    await waitFor(
      "no S3 reads or writes for 15 s",
      async () => {
        const quiet = (m: Scrape) =>
          [...m].filter(([k]) => /ticclip_s3_requests_total\{operation="(GetObject|PutObject)"/.test(k));
        const before = quiet(await scrape(port));
        await sleep(15_000);
        const after = new Map(quiet(await scrape(port)));
        return before.every(([k, v]) => after.get(k) === v) && after.size === before.length ? true : undefined;
      },
      600_000,
      0,
    );
    console.log(`settled (no S3 reads or writes for 15 s) after ${((performance.now() - t) / 1000).toFixed(0)} s more`);
    const api0 = await operatorKubeRequests(port);
    const m0 = await scrape(port);
    const t0 = performance.now();
    await sleep(WINDOW_S * 1000);
    const minutes = (performance.now() - t0) / 60_000;
    const api = nonWatch(requestDelta(api0, await operatorKubeRequests(port)));
    const m1 = await scrape(port);
    const mem = await memoryOf(op, port);
    const perMin = (n: number) => (n / minutes).toFixed(1);
    const total = [...api.values()].reduce((a, b) => a + b, 0);
    const leases = [...api].filter(([k]) => k.endsWith(" leases")).reduce((n, [, v]) => n + v, 0);
    const s3 = sum(m1, "ticclip_s3_requests_total") - sum(m0, "ticclip_s3_requests_total");
    const reconciles = sum(m1, "ticclip_reconcile_total") - sum(m0, "ticclip_reconcile_total");
    console.log(`steady state (${RUNS} runs x ${ROUNDS} rounds, pollInterval 60s, resync 300s, ${WINDOW_S} s window):`);
    console.log(
      `  API requests/min (the operator's own, non-watch): ${perMin(total)} (leases ${perMin(leases)}, other ${perMin(total - leases)})`,
    );
    console.log(`    by verb and resource: ${[...api].map(([k, v]) => `${k} ${perMin(v)}`).join(", ") || "none"}`);
    console.log(
      `  S3 requests/min: ${perMin(s3)} (${(s3 / minutes / RUNS).toFixed(2)} per run per 60 s poll interval)`,
    );
    const s3ops = [...m1].filter(([k]) => k.startsWith("ticclip_s3_requests_total{"));
    console.log(
      `    by operation: ${s3ops.map(([k, v]) => `${/operation="([^"]+)"/.exec(k)![1]} ${perMin(v - (m0.get(k) ?? 0))}`).join(", ")}`,
    );
    console.log(
      `  reconciles/min ${perMin(reconciles)}, latency p50 ${histogramQuantile(m0, m1, 0.5)}, p99 ${histogramQuantile(m0, m1, 0.99)}`,
    );
    console.log(
      `  operator memory: RSS ${mem.rss.toFixed(0)} MiB, peak ${mem.peak.toFixed(0)} MiB, heap used ${mem.heap.toFixed(0)} MiB` +
        ` (with no runs: RSS ${base.rss.toFixed(0)} MiB, heap used ${base.heap.toFixed(0)} MiB)`,
    );
    const perRun = (now: number, idle: number) => ((now - idle) * 1024) / RUNS;
    console.log(
      `    each run adds: ${perRun(mem.rss, base.rss).toFixed(0)} KiB RSS, ${perRun(mem.heap, base.heap).toFixed(0)} KiB heap` +
        ` (${((perRun(mem.heap, base.heap) * 1024) / ROUNDS).toFixed(0)} B heap per round)`,
    );
    // Under that load: new slices for runs of the same operator, announced by notifications.
    if (!process.env.BENCH_SKIP_LATENCY) {
      printLatency("notifications", await latency("notifications", { ns, port: notifyPort }), `${RUNS} runs managed`);
    }
    // Catch-up after a restart: every run reconciled once more from S3, with nothing cached.
    await op.stop();
    t = performance.now();
    op = start();
    const allRuns = RUNS + (process.env.BENCH_SKIP_LATENCY ? 0 : LATENCY_SAMPLES);
    await waitFor(
      "every run reconciled after the restart",
      async () => {
        const m = await scrape(port).catch(() => undefined);
        return m && sum(m, "ticclip_reconcile_total") >= allRuns ? true : undefined;
      },
      900_000,
      500,
    );
    console.log(
      `  catch-up after a restart (start to ${allRuns} runs reconciled): ${((performance.now() - t) / 1000).toFixed(1)} s`,
    );
  } finally {
    await op.stop();
    removeNamespace(ns);
  }
}

applyCrds();
// Without load: each mode with an operator of its own and only the sample runs.
for (const mode of process.env.BENCH_SKIP_LATENCY ? [] : (["notifications", "polling"] as const)) {
  printLatency(mode, await latency(mode), "no other runs");
}
await steadyState();
