// Benchmark of the evaluator, in one run so ratios compare like with like on the same machine state:
// - encoding: onnxruntime-node (the evaluator's own path, fp32 and int8 dynamic quantisation)
//   against PyTorch eager and onnxruntime in Python, images/s and texts/s, at 1 thread and all;
// - metrics: retrieval for a 10k x 10k pack and zero-shot 10k images x 1,000 classes;
// - a full in-process evaluation: event-loop delay (perf_hooks.monitorEventLoopDelay) with the
//   work in a worker thread (evaluateRound) and, for contrast, on the main thread (scoreRound);
// - int8 against fp32: the pack's metrics and the embeddings' cosine;
// - peak RSS of this process and of the Python processes.
//
//   npm run bench:evaluator -- [--archs ticclip-tiny,ViT-B-32] [--images ticclip-tiny=1024,ViT-B-32=64]
//     [--threads 1,all] [--batch 64] [--repeats 2] [--metric-size 10000] [--skip-python] [--skip-encoding]
//
// Models are random init (no hub access): right for speed, not for accuracy. The model and the
// pack are built in a temp folder by bench/evaluator_torch.py in the trainer's venv.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { MemoryObjectStore } from "../operator/s3/object-store.ts";
import { evaluateRound, type EvaluateRequest } from "../operator/evaluation/evaluate.ts";
import { scoreRound } from "../operator/evaluation/score.ts";
import { createSimilarityKernel } from "../operator/evaluation/kernel.ts";
import { normalizeRows, retrievalMetrics, zeroShotMetrics, type Embeddings } from "../operator/evaluation/metrics.ts";
import { encode, encoderBatch, loadModel, releaseModel } from "../operator/evaluation/onnx.ts";
import { defaultIntraOpThreads } from "../operator/evaluation/runtime.ts";
import { normalizeImages, openPack, readInts, readShards } from "../operator/evaluation/pack.ts";
import type { EvalSucceeded } from "../operator/api/eval-result.ts";
import { venvPython } from "../test/support/local-run.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values: o } = parseArgs({
  options: {
    archs: { type: "string", default: "ticclip-tiny,ViT-B-32" },
    images: { type: "string", default: "ticclip-tiny=1024,ViT-B-32=64" },
    threads: { type: "string", default: "1,all" },
    batch: { type: "string", default: "64" },
    repeats: { type: "string", default: "2" },
    "metric-size": { type: "string", default: "10000" },
    "skip-python": { type: "boolean", default: false },
    "skip-encoding": { type: "boolean", default: false },
  },
});
const ALL = defaultIntraOpThreads();
const threadCounts = [...new Set(o.threads.split(",").map((t) => (t === "all" ? ALL : Number(t))))];
const batch = Number(o.batch);
const repeats = Number(o.repeats);
const imagesPerArch = Object.fromEntries(o.images.split(",").map((kv) => kv.split("=") as [string, string]));
const round = (x: number, d = 2) => Number(x.toFixed(d));
const peakRssMiB = () => Math.round(process.resourceUsage().maxRSS / 1024);

function python(args: string[]): Record<string, number | string> {
  const res = spawnSync(venvPython(), [path.join(ROOT, "bench/evaluator_torch.py"), ...args], {
    encoding: "utf8",
    env: { ...process.env, PYTHONPATH: process.env.PYTHONPATH || path.join(ROOT, "trainer-image/src") },
    maxBuffer: 16 * 1024 * 1024,
  });
  if (res.status !== 0) throw new Error(`evaluator_torch.py ${args[0]} failed:\n${res.stderr.slice(-3000)}`);
  return JSON.parse(res.stdout.trim().split("\n").at(-1)!);
}

function loadDir(store: MemoryObjectStore, dir: string, uri: string): void {
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) loadDir(store, p, `${uri}${name}/`);
    else if (name === "checkpoint.pt")
      continue; // only the PyTorch side reads it
    else store.objects.set(uri + name, new Uint8Array(readFileSync(p)));
  }
}

async function best(fn: () => Promise<void>): Promise<number> {
  await fn(); // warm-up
  let t = Infinity;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    await fn();
    t = Math.min(t, (performance.now() - t0) / 1000);
  }
  return t;
}

/** The evaluator's encode path (read shard, normalise into a reused buffer, encode, checks). */
async function onnxruntimeNode(store: MemoryObjectStore, modelUri: string, packUri: string, threads: number) {
  const model = await loadModel(store, modelUri, { executionProvider: "cpu", intraOpNumThreads: threads });
  try {
    const pack = await openPack(store, packUri);
    const m = pack.manifest;
    if (m.kind !== "retrieval") throw new Error("bench pack is a retrieval pack");
    const per = 3 * m.preprocessing.imageSize ** 2;
    const n = m.images.shape[0]!;
    const imageBatch = encoderBatch(batch, model.image.rowShape);
    const buffer = new Float32Array(imageBatch * per);
    const tokens = await readInts(store, pack, "texts", m.texts);
    const ti = await best(async () => {
      for await (const sh of readShards(store, pack, "images", m.images)) {
        for (let r = 0; r < sh.rows; r += imageBatch) {
          const b = Math.min(imageBatch, sh.rows - r);
          await encode(
            model.image,
            normalizeImages(sh.bytes.subarray(r * per, (r + b) * per), m.preprocessing, buffer),
            b,
            imageBatch,
          );
        }
      }
    });
    const tt = await best(async () => void (await encode(model.text, tokens, m.texts.shape[0]!, batch)));
    return { imagesPerSecond: round(n / ti), textsPerSecond: round(m.texts.shape[0]! / tt), imageBatch };
  } finally {
    await releaseModel(model);
  }
}

function randomUnit(rows: number, dim: number, seed: number): Embeddings {
  let s = seed;
  const data = Float32Array.from({ length: rows * dim }, () => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s / 0x7fffffff - 0.5;
  });
  return normalizeRows({ data, rows, dim });
}

/** Metric time for an N x N pack (every caption a distinct text: the most work) and zero-shot N x 1,000. */
async function metricTimes(n: number, dim: number) {
  const images = randomUnit(n, dim, 1);
  const texts = randomUnit(n, dim, 2);
  // Captions near their images, so the ranking work is realistic (most right answers near the top).
  for (let i = 0; i < texts.data.length; i++) texts.data[i] = 0.3 * texts.data[i]! + images.data[i]!;
  const ids = Int32Array.from({ length: n }, (_, i) => i);
  const classes = randomUnit(1000, dim, 3);
  const labels = Int32Array.from({ length: n }, (_, i) => i % 1000);
  const out: Record<string, unknown> = {};
  for (const threads of threadCounts) {
    const kernel = await createSimilarityKernel(threads);
    const input = { images, texts: normalizeRows(texts), textImage: ids, textGroup: ids };
    const rss0 = process.memoryUsage().rss;
    const retrieval = await best(async () => void (await retrievalMetrics(kernel, input, [1, 5, 10])));
    const zeroShot = await best(async () => void (await zeroShotMetrics(kernel, images, classes, labels)));
    await kernel.release();
    out[`threads${threads}`] = {
      retrievalSeconds: round(retrieval, 3),
      zeroShotSeconds: round(zeroShot, 3),
      rssGrowthMiB: Math.round((process.memoryUsage().rss - rss0) / 2 ** 20),
    };
  }
  return { images: n, texts: n, dim, ...out, peakRssMiB: peakRssMiB() };
}

/** Longest event-loop stall (ms) while fn runs, sampled at 10 ms resolution. */
/**
 * Longest event-loop stall (ms) while fn runs, sampled at 10 ms resolution, and the loop's total
 * active time: a stall longer than all the time the loop spent running code is the OS not
 * scheduling the thread (a loaded machine), not code blocking it.
 */
async function loopDelay<T>(fn: () => Promise<T>) {
  const h = monitorEventLoopDelay({ resolution: 10 });
  const elu0 = performance.eventLoopUtilization();
  h.enable();
  const t0 = performance.now();
  const value = await fn();
  const seconds = (performance.now() - t0) / 1000;
  h.disable();
  const elu = performance.eventLoopUtilization(elu0);
  return {
    value,
    maxMs: round(h.max / 1e6, 1),
    p99Ms: round(h.percentile(99) / 1e6, 1),
    loopActiveMs: round(elu.active, 1),
    seconds: round(seconds, 2),
  };
}

async function benchArch(arch: string) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "bench-evaluator-"));
  try {
    const images = imagesPerArch[arch] ?? "256";
    python(["prepare", "--out", dir, "--arch", arch, "--images", images]);
    const store = new MemoryObjectStore();
    loadDir(store, dir, "s3://bench/");
    const packUri = "s3://bench/pack/";
    const encoding: Record<string, unknown> = {};
    for (const threads of o["skip-encoding"] ? [] : threadCounts) {
      const row: Record<string, unknown> = {};
      row.onnxruntimeNode = await onnxruntimeNode(store, "s3://bench/model/", packUri, threads);
      row.onnxruntimeNodeInt8 = await onnxruntimeNode(store, "s3://bench/int8/", packUri, threads);
      if (!o["skip-python"]) {
        // The same batch sizes as the evaluator's (encoderBatch), so both sides do the same calls.
        const imageBatch = (row.onnxruntimeNode as { imageBatch: number }).imageBatch;
        const args = [
          "--dir",
          dir,
          "--batch",
          String(imageBatch),
          "--text-batch",
          String(batch),
          "--threads",
          String(threads),
          "--repeats",
          String(repeats),
        ];
        row.pytorchEager = python(["torch", ...args]);
        row.onnxruntimePython = python(["ort", ...args]);
        const ort = row.onnxruntimeNode as { imagesPerSecond: number; textsPerSecond: number };
        const q = row.onnxruntimeNodeInt8 as { imagesPerSecond: number };
        const torch = row.pytorchEager as { imagesPerSecond: number; textsPerSecond: number };
        row.ratioOverPytorch = {
          images: round(ort.imagesPerSecond / torch.imagesPerSecond),
          texts: round(ort.textsPerSecond / torch.textsPerSecond),
          imagesInt8: round(q.imagesPerSecond / torch.imagesPerSecond),
        };
      }
      encoding[`threads${threads}`] = row;
    }

    const req = (roundUri: string): EvaluateRequest => ({
      round: 0,
      roundUri,
      roundSlices: ["bench"],
      retrieval: [{ sliceId: "bench", packUri }],
      zeroShot: [],
      k: [1, 5, 10],
      previousRows: [],
      batchSize: batch,
      now: new Date().toISOString(),
    });
    // Worker first, as in an operator process: a main-thread evaluation before it would leave
    // gigabytes of garbage whose collection lands in the worker's measurement. The worker only
    // reads the optimised-graph cache; the main-thread run (like an evaluation Job) writes it.
    const worker = await loopDelay(() => evaluateRound(store, req("s3://bench/model/")));
    const main = await loopDelay(() => scoreRound(store, req("s3://bench/model/")));
    const int8 = await scoreRound(store, req("s3://bench/int8/"));
    const ok = (r: unknown) => {
      const e = r as EvalSucceeded;
      if (e.status !== "Succeeded") throw new Error(`evaluation failed: ${JSON.stringify(r)}`);
      return e;
    };
    const fp = ok(worker.value).candidate.retrieval[0]!;
    const q = ok(int8).candidate.retrieval[0]!;
    return {
      architecture: arch,
      images: Number(images),
      encoding,
      fullEvaluation: {
        inWorkerThread: {
          seconds: worker.seconds,
          eventLoopMaxMs: worker.maxMs,
          eventLoopP99Ms: worker.p99Ms,
          eventLoopActiveMs: worker.loopActiveMs,
          timing: ok(worker.value).timing,
        },
        onMainThread: {
          seconds: main.seconds,
          eventLoopMaxMs: main.maxMs,
          eventLoopP99Ms: main.p99Ms,
          eventLoopActiveMs: main.loopActiveMs,
          optimizedModelCache: ok(main.value).timing.optimizedModelCache,
        },
      },
      int8VsFp32: {
        maxMetricDifferencePoints: round(
          100 * Math.max(...Object.keys(fp.metrics).map((k) => Math.abs(fp.metrics[k]! - q.metrics[k]!))),
          2,
        ),
        fp32: fp.metrics,
        int8: q.metrics,
        chance: fp.chance,
      },
      peakRssMiB: peakRssMiB(),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const report: Record<string, unknown> = {
  machine: {
    cpus: os.availableParallelism(),
    model: os.cpus()[0]?.model,
    loadAverage: os.loadavg().map((x) => round(x)),
    threadsAll: ALL,
  },
  batch,
};
report.metrics = await metricTimes(Number(o["metric-size"]), 512);
for (const arch of o.archs.split(",").filter(Boolean)) report[arch] = await benchArch(arch); // --archs= : metrics only
console.log(JSON.stringify(report, null, 2));
