// Benchmark: image encoding throughput of the onnxruntime-node evaluator against PyTorch eager CPU
// inference of the same model on the same eval pack, in one run (a ratio), plus the evaluator's
// peak memory on a full evaluateRound.
//
//   npm run bench:evaluator -- [--arch ticclip-tiny] [--images 512] [--batch 64] [--threads 1] [--repeats 3]
//
// The model (random init, exported by the trainer's export.py) and the pack (make-evalpack's
// writer) are built in a temp folder by bench/evaluator_torch.py in the trainer's venv; both sides
// read the same files and use the same number of threads.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { MemoryObjectStore } from "../operator/s3/object-store.ts";
import { evaluateRound } from "../operator/evaluation/evaluate.ts";
import { encode, loadModel, releaseModel } from "../operator/evaluation/onnx.ts";
import { normalizeImages, openPack, readShards } from "../operator/evaluation/pack.ts";
import { venvPython } from "../test/support/local-run.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values: o } = parseArgs({
  options: {
    arch: { type: "string", default: "ticclip-tiny" },
    images: { type: "string", default: "512" },
    batch: { type: "string", default: "64" },
    threads: { type: "string", default: "1" },
    repeats: { type: "string", default: "3" },
  },
});
const batch = Number(o.batch);
const threads = Number(o.threads);
const repeats = Number(o.repeats);

function python(args: string[]): Record<string, unknown> {
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
    else if (name === "checkpoint.pt") continue; // only the PyTorch side reads it
    else store.objects.set(uri + name, new Uint8Array(readFileSync(p)));
  }
}

const dir = mkdtempSync(path.join(tmpdir(), "bench-evaluator-"));
try {
  python(["prepare", "--out", dir, "--arch", o.arch, "--images", o.images]);
  const store = new MemoryObjectStore();
  loadDir(store, dir, "s3://bench/");
  const packUri = "s3://bench/pack/";
  const modelUri = "s3://bench/model/";

  // onnxruntime-node: the evaluator's own path (read shard, normalise, encode, checks), best of N.
  const model = await loadModel(store, modelUri, { executionProvider: "cpu", intraOpNumThreads: threads });
  const pack = await openPack(store, packUri);
  const per = 3 * pack.manifest.preprocessing.imageSize ** 2;
  const n = pack.manifest.images.shape[0]!;
  let best = Infinity;
  for (let rep = 0; rep < repeats + 1; rep++) {
    const t0 = performance.now();
    for await (const sh of readShards(store, pack, "images", pack.manifest.images)) {
      for (let r = 0; r < sh.rows; r += batch) {
        const b = Math.min(batch, sh.rows - r);
        await encode(model.image, normalizeImages(sh.bytes.subarray(r * per, (r + b) * per), pack.manifest.preprocessing), b, batch);
      }
    }
    if (rep > 0) best = Math.min(best, (performance.now() - t0) / 1000); // rep 0 warms up
  }
  await releaseModel(model);
  const ort = { imagesPerSecond: n / best, seconds: best };

  const torch = python(["torch", "--dir", dir, "--batch", String(batch), "--threads", String(threads), "--repeats", String(repeats)]) as { imagesPerSecond: number; seconds: number; torch: string };

  // Full evaluation (retrieval both ways, all checks) and the process's peak memory.
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  const ev = await evaluateRound(store, { round: 0, roundUri: modelUri, roundSlices: ["bench"], retrieval: [{ sliceId: "bench", packUri }], zeroShot: [], k: [1, 5, 10], previousRows: [], batchSize: batch, intraOpNumThreads: threads, now: new Date().toISOString() });
  const evalSeconds = (performance.now() - t0) / 1000;
  if (ev.status !== "Succeeded") throw new Error(`evaluateRound failed: ${ev.message}`);

  const report = {
    architecture: o.arch,
    images: n,
    imageSize: pack.manifest.preprocessing.imageSize,
    batch,
    threads,
    onnxruntimeNode: { imagesPerSecond: Math.round(ort.imagesPerSecond), seconds: +ort.seconds.toFixed(3) },
    pytorchEager: { imagesPerSecond: Math.round(torch.imagesPerSecond), seconds: +torch.seconds.toFixed(3), version: torch.torch },
    ratioOrtOverTorch: +(ort.imagesPerSecond / torch.imagesPerSecond).toFixed(2),
    fullEvaluation: { seconds: +evalSeconds.toFixed(3), imagesEncoded: ev.timing.imagesEncoded, textsEncoded: ev.timing.textsEncoded },
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    rssBeforeEvaluationMiB: Math.round(rssBefore / 2 ** 20),
    packBytesMiB: +([...store.objects.entries()].filter(([k]) => k.startsWith(packUri)).reduce((s, [, v]) => s + v.length, 0) / 2 ** 20).toFixed(2),
  };
  console.log(JSON.stringify(report, null, 2));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
