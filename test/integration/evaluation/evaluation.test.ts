// Evaluation, gates and promotion against the local S3 server with real tiny models: the trainer
// trains three warm-started rounds on drifting synthetic slices and exports ONNX (fixture.py, in
// the trainer's venv); the TypeScript evaluator scores them with onnxruntime-node.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { s3Client, createBucket } from "../../support/s3.ts";
import { venvPython } from "../../support/local-run.ts";
import { S3ObjectStore } from "../../../operator/s3/object-store.ts";
import { main as cli, EXIT_BAD_INPUT, EXIT_OK } from "../../../operator/evaluation/cli.ts";
import { evaluateRound, readEvalResult } from "../../../operator/evaluation/evaluate.ts";
import { decideGates, type Gate } from "../../../operator/evaluation/gates.ts";
import {
  pinAlias,
  promoteRound,
  promotedStatus,
  readAlias,
  type PromotionTarget,
} from "../../../operator/promotion/versions.ts";
import { buildModelConfigMap } from "../../../operator/promotion/configmap.ts";
import { EVAL_REQUEST_JSON, type EvalRequest } from "../../../operator/api/eval-request.ts";
import type { EvalResult, EvalSucceeded } from "../../../operator/api/eval-result.ts";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../../..");

type Fixture = {
  slices: string[];
  rounds: string[];
  zeroShot: string;
  source: string;
  bad: Record<"nan" | "wrong-name" | "wrong-size", string>;
  parity: {
    roundUri: string;
    k: number[];
    packs: Record<string, Record<string, number>>;
    zeroShot: { top1: number; top5: number };
  };
};

let fx: Fixture;
let bucket: string;
const client = s3Client();
const store = new S3ObjectStore(client);
const NOW = "2026-06-01T00:00:00Z";

function succeeded(r: EvalResult | undefined): EvalSucceeded {
  assert.ok(r, "eval.json missing");
  assert.equal(r.status, "Succeeded", r.status === "Failed" ? `${r.reason}: ${r.message}` : "");
  return r as EvalSucceeded;
}

async function copyFolder(from: string, to: string): Promise<void> {
  for (const o of await store.list(from)) await store.copy(o.uri, to + o.uri.slice(from.length));
}

/** Writes round `round`'s eval-request.json (as the operator does before the Job) and returns the Job's argv. */
async function evaluateArgs(
  round: number,
  baseline?: { uri: string; version: number },
  roundUri = fx.rounds[round]!,
): Promise<string[]> {
  const request: EvalRequest = {
    schemaVersion: 1,
    run: { namespace: "default", name: "eval-test", uid: "0000-eval" },
    round,
    roundUri,
    roundSlices: [fx.slices[round]!],
    sourceUri: fx.source,
    slices: fx.slices,
    zeroShot: [{ name: "shapes", uri: fx.zeroShot }],
    k: [1, 5, 10],
    ...(baseline ? { baseline } : {}),
    executionProvider: "cpu",
    batchSize: 64,
  };
  await store.put(roundUri + EVAL_REQUEST_JSON, JSON.stringify(request));
  return ["evaluate", "--request", roundUri + EVAL_REQUEST_JSON];
}

before(async () => {
  bucket = await createBucket(client, "eval");
  const res = spawnSync(venvPython(), [path.join(HERE, "fixture.py"), "all", "--bucket", bucket, "--rounds", "3"], {
    encoding: "utf8",
    env: { ...process.env, PYTHONPATH: process.env.PYTHONPATH || path.join(ROOT, "trainer-image/src") },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (res.status !== 0) throw new Error(`fixture.py failed (${res.status}):\n${res.stderr.slice(-4000)}`);
  fx = JSON.parse(res.stdout.trim().split("\n").at(-1)!) as Fixture;
});

after(() => client.destroy());

describe("evaluation of three trained rounds", () => {
  const target = (): PromotionTarget => ({ bucket, prefix: "models/clip/", alias: "production" });
  const run = { namespace: "default", name: "eval-test", uid: "0000-eval" };

  test("each round is scored, gated and promoted or rejected as its gates say; eval.json holds the TiC matrix", async () => {
    // Round 1's gate cannot pass (recall is at most 1); rounds 0 and 2 pass, round 2 also against
    // the promoted model rescored on its packs.
    const gatesFor: Gate[][] = [
      [
        { metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0 },
        { metric: "retrieval.backward.meanRecallAt1", op: ">=", value: 0.99 },
      ],
      [{ metric: "retrieval.id.meanRecallAt1", op: ">", value: 1 }],
      [
        { metric: "retrieval.id.meanRecallAt1", maxRegression: 1 },
        { metric: "zeroShot.shapes.top1", op: ">=", value: 0 },
      ],
    ];
    const outcomes: string[] = [];
    for (const r of [0, 1, 2]) {
      const alias = await readAlias(store, target());
      const baseline = alias && !("invalid" in alias) ? { uri: alias.uri, version: alias.version } : undefined;
      assert.equal(await cli(await evaluateArgs(r, baseline), store), EXIT_OK);
      const ev = succeeded(await readEvalResult(store, fx.rounds[r]!));
      const base = ev.baseline
        ? {
            version: ev.baseline.version,
            metrics: ev.baseline.metrics,
            notApplicable: ev.baseline.notApplicable,
            rescoredOnSamePacks: true,
          }
        : undefined;
      const decision = decideGates(
        gatesFor[r]!,
        { metrics: ev.candidate.metrics, notApplicable: ev.candidate.notApplicable },
        base,
      );
      if (decision.passed) {
        const p = await promoteRound(store, {
          target: target(),
          run,
          round: r,
          roundUri: fx.rounds[r]!,
          metrics: ev.candidate.metrics,
          now: NOW,
        });
        assert.ok(p.ok, !p.ok ? p.message : "");
        outcomes.push(`promoted v${p.pointer.version}`);
      } else outcomes.push(`rejected: ${decision.message}`);
    }
    assert.equal(outcomes[0], "promoted v1");
    assert.match(outcomes[1]!, /^rejected: failed gates: retrieval\.id\.meanRecallAt1 \(0\.\d+ not > 1\)/);
    assert.equal(outcomes[2], "promoted v2");

    // Round 0's backward gate is not applicable (no earlier slice), so it passed with that reason.
    const ev0 = succeeded(await readEvalResult(store, fx.rounds[0]!));
    assert.match(
      decideGates(gatesFor[0]!, ev0.candidate, undefined).results[1]!.message,
      /not applicable: no slice before/,
    );
    assert.deepEqual(
      ev0.candidate.retrieval.map((r) => [r.sliceId, r.relation]),
      [
        ["2016", "id"],
        ["2017", "forward"],
      ],
    );

    const ev2 = succeeded(await readEvalResult(store, fx.rounds[2]!));
    assert.equal(ev2.baseline?.version, 1, "round 2 rescored promoted v1 on the same packs");
    assert.deepEqual(
      ev2.baseline.retrieval.map((r) => r.sliceId),
      ["2016", "2017", "2018", "2019"],
    );
    assert.equal(ev2.baseline.sha256.image, ev0.candidate.sha256.image);
    // The promoted model rescored equals its own round's scores on the packs both saw.
    assert.equal(ev2.baseline.retrieval[0]!.metrics.meanRecallAt1, ev0.candidate.retrieval[0]!.metrics.meanRecallAt1);

    // TiC matrix: 3 rounds x 4 slices; row i covers slices <= i + 1; values in [0, 1].
    const m = ev2.matrix;
    assert.deepEqual(m.rounds, [0, 1, 2]);
    assert.deepEqual(m.slices, fx.slices);
    assert.equal(m.values.length, 3);
    m.values.forEach((row, i) => {
      assert.equal(row.length, 4);
      row.forEach((v, j) => {
        if (j <= i + 1) assert.ok(v !== null && v >= 0 && v <= 1, `E[${i}][${j}] = ${v}`);
        else assert.equal(v, null, `E[${i}][${j}] should not be scored`);
      });
    });
    const id = (m.values[0]![0]! + m.values[1]![1]! + m.values[2]![2]!) / 3;
    assert.ok(Math.abs(m.summary.id! - id) < 1e-12);
    for (const s of [m.summary.backward, m.summary.forward]) assert.ok(s !== null && s >= 0 && s <= 1);
    assert.ok(
      ev2.candidate.metrics["zeroShot.shapes.top1"]! >= 0 && ev2.candidate.metrics["zeroShot.shapes.top5"]! <= 1,
    );
    assert.equal(ev2.candidate.zeroShot[0]!.classes, 10);
  });

  test("promotion wrote v1 and v2 and the alias; rollback by pinning moves alias and ConfigMap back to v1", async () => {
    const alias = await readAlias(store, target());
    assert.ok(alias && !("invalid" in alias));
    assert.equal(alias.version, 2);
    assert.equal(alias.round, 2);
    const v2model = await store.get(alias.uris.imageEncoder!);
    const r2model = await store.get(fx.rounds[2]! + "image_encoder.onnx");
    assert.ok(v2model && r2model && Buffer.compare(v2model, r2model) === 0, "v2 holds round 2's encoder");
    assert.ok(await store.get(alias.uri + "eval.json"), "eval.json is copied with the version");

    const pinned = await pinAlias(store, target(), 1, "2026-06-02T00:00:00Z");
    assert.ok(pinned.ok);
    const now = await readAlias(store, target());
    assert.ok(now && !("invalid" in now));
    assert.equal(now.version, 1);
    assert.equal(now.round, 0);
    assert.equal(now.pinned, true);
    const cm = buildModelConfigMap(
      "eval-test-model",
      {
        apiVersion: "ticclip.dev/v1alpha1",
        kind: "ContinualClipRun",
        name: "eval-test",
        namespace: "default",
        uid: "0000-eval",
      },
      now,
      pinned.pointerUri,
    );
    assert.equal(cm.data.version, "1");
    assert.equal(cm.data.imageEncoderUri, `s3://${bucket}/models/clip/v1/image_encoder.onnx`);
    assert.deepEqual(promotedStatus(now).version, 1);
  });

  test("in-process evaluation runs in a worker thread, reuses the cached optimised graphs and scores as the Job did", async () => {
    const job = succeeded(await readEvalResult(store, fx.rounds[2]!));
    assert.equal(job.timing.inWorkerThread, false, "the CLI (evaluation Job) scores on its main thread");
    const inProcess = await evaluateRound(store, {
      round: 2,
      roundUri: fx.rounds[2]!,
      roundSlices: [fx.slices[2]!],
      retrieval: fx.slices.map((id) => ({ sliceId: id, packUri: `${fx.source}${id}/eval/` })),
      zeroShot: [{ name: "shapes", uri: fx.zeroShot }],
      k: [1, 5, 10],
      previousRows: [],
      now: NOW,
    });
    const ev = succeeded(inProcess);
    assert.equal(ev.timing.inWorkerThread, true);
    assert.deepEqual(
      Object.values(ev.timing.optimizedModelCache ?? {}),
      ["hit", "hit"],
      "the Job's run cached both optimised encoders",
    );
    assert.deepEqual(
      ev.candidate.retrieval.map((r) => r.metrics),
      job.candidate.retrieval.map((r) => r.metrics),
    );
    assert.deepEqual(ev.candidate.zeroShot[0]!.metrics, job.candidate.zeroShot[0]!.metrics);
  });

  test("eval.json states the chance level beside each metric; synthetic packs repeat captions", async () => {
    const ev = succeeded(await readEvalResult(store, fx.rounds[2]!));
    for (const r of ev.candidate.retrieval) {
      assert.ok(r.chance, `chance for slice ${r.sliceId}`);
      assert.deepEqual(Object.keys(r.chance).sort(), Object.keys(r.metrics).sort());
      for (const v of Object.values(r.chance)) assert.ok(v > 0 && v < 1);
      assert.ok(r.distinctTexts! < r.texts, `slice ${r.sliceId}: ${r.distinctTexts} distinct of ${r.texts} captions`);
    }
    assert.ok(Math.abs(ev.candidate.zeroShot[0]!.chance!.top1 - 1 / 10) < 1e-12);
    assert.ok(ev.candidate.chance?.["retrieval.id.meanRecallAt1"] !== undefined);
    assert.ok(ev.candidate.chance?.["zeroShot.shapes.top5"] !== undefined);
  });

  test("zero-shot top-1/top-5 match open_clip's build_zero_shot_classifier within 0.5 points", async () => {
    const ev = succeeded(await readEvalResult(store, fx.parity.roundUri));
    const ts = ev.candidate.zeroShot[0]!.metrics;
    for (const k of ["top1", "top5"] as const) {
      assert.ok(
        Math.abs(ts[k] - fx.parity.zeroShot[k]) <= 0.005,
        `${k}: TypeScript ${ts[k]} vs open_clip ${fx.parity.zeroShot[k]}`,
      );
    }
  });

  test("the TypeScript evaluator matches open_clip in PyTorch within 0.5 points on every pack", async () => {
    const ev = succeeded(await readEvalResult(store, fx.parity.roundUri));
    const ours = new Map(ev.candidate.retrieval.map((r) => [r.sliceId, r.metrics]));
    for (const [slice, py] of Object.entries(fx.parity.packs)) {
      const ts = ours.get(slice);
      assert.ok(ts, `slice ${slice} scored`);
      for (const [k, v] of Object.entries(py)) {
        assert.ok(Math.abs(ts[k]! - v) <= 0.005, `${slice} ${k}: TypeScript ${ts[k]} vs PyTorch ${v}`);
      }
    }
  });
});

describe("bad input fails the evaluation with a clear reason", () => {
  const cases: { name: string; setup: () => Promise<string>; reason: string; message: RegExp }[] = [
    {
      name: "a corrupt ONNX file",
      setup: async () => {
        const uri = `s3://${bucket}/bad/corrupt/`;
        await copyFolder(fx.rounds[0]!, uri);
        await store.put(uri + "image_encoder.onnx", new Uint8Array(4096).fill(7));
        return uri;
      },
      reason: "InvalidModel",
      message: /image_encoder\.onnx is not a loadable ONNX model/,
    },
    {
      name: "wrong input names",
      setup: async () => fx.bad["wrong-name"],
      reason: "InvalidModel",
      message: /inputs are \[pixels\], model\.json says \[image\]/,
    },
    {
      name: "wrong input shape",
      setup: async () => fx.bad["wrong-size"],
      reason: "InvalidModel",
      message: /input image has shape \[batch, 3, 16, 16\], expected \[batch, 3, 32, 32\]/,
    },
    {
      name: "NaN embeddings",
      setup: async () => fx.bad.nan,
      reason: "NonFiniteEmbeddings",
      message: /image_encoder\.onnx: embedding of row 0 has a non-finite value \(NaN\)/,
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const uri = await c.setup();
      assert.equal(await cli(await evaluateArgs(0, undefined, uri), store), EXIT_BAD_INPUT);
      const r = await readEvalResult(store, uri);
      assert.ok(r && r.status === "Failed", "eval.json records the failure");
      assert.equal(r.reason, c.reason);
      assert.match(r.message, c.message);
    });
  }

  test("a pack whose counts disagree with its manifest", async () => {
    const pack = `s3://${bucket}/bad/pack-count/`;
    await copyFolder(`${fx.source}2016/eval/`, pack);
    const manifest = JSON.parse(new TextDecoder().decode(await store.get(pack + "pack.json")));
    manifest.images.shape[0] += 1;
    await store.put(pack + "pack.json", JSON.stringify(manifest));
    const r = await evaluateRound(store, {
      round: 0,
      roundUri: fx.rounds[0]!,
      roundSlices: ["2016"],
      retrieval: [{ sliceId: "2016", packUri: pack }],
      zeroShot: [],
      k: [1],
      previousRows: [],
      now: NOW,
    });
    assert.equal(r.status, "Failed");
    assert.ok(r.status === "Failed" && r.reason === "InvalidEvalPack");
    assert.match(r.message, /images: shards hold 48 rows, shape says 49/);
  });

  test("a pack whose captions point at images it does not have", async () => {
    const pack = `s3://${bucket}/bad/pack-index/`;
    await copyFolder(`${fx.source}2016/eval/`, pack);
    const manifest = JSON.parse(new TextDecoder().decode(await store.get(pack + "pack.json")));
    const shard = manifest.textImage.shards[0];
    const ids = new Int32Array(manifest.textImage.shape[0]).map((_, i) => i);
    ids[3] = 999;
    const bytes = new Uint8Array(ids.buffer);
    await store.put(pack + shard.file, bytes);
    shard.sha256 = createHash("sha256").update(bytes).digest("hex");
    await store.put(pack + "pack.json", JSON.stringify(manifest));
    const r = await evaluateRound(store, {
      round: 0,
      roundUri: fx.rounds[0]!,
      roundSlices: ["2016"],
      retrieval: [{ sliceId: "2016", packUri: pack }],
      zeroShot: [],
      k: [1],
      previousRows: [],
      now: NOW,
    });
    assert.ok(r.status === "Failed" && r.reason === "InvalidEvalPack");
    assert.match(r.message, /pack-index\/: text 3 points at image 999, outside \[0, 48\)/);
  });

  test("a pack file that is shorter than its manifest says", async () => {
    const pack = `s3://${bucket}/bad/pack-short/`;
    await copyFolder(`${fx.source}2016/eval/`, pack);
    const manifest = JSON.parse(new TextDecoder().decode(await store.get(pack + "pack.json")));
    const file = manifest.texts.shards[0].file as string;
    const bytes = (await store.get(pack + file))!;
    await store.put(pack + file, bytes.subarray(0, bytes.length - 8));
    const r = await evaluateRound(store, {
      round: 0,
      roundUri: fx.rounds[0]!,
      roundSlices: ["2016"],
      retrieval: [{ sliceId: "2016", packUri: pack }],
      zeroShot: [],
      k: [1],
      previousRows: [],
      now: NOW,
    });
    assert.ok(r.status === "Failed" && r.reason === "InvalidEvalPack");
    assert.match(
      r.message,
      new RegExp(`${file} \\(texts\\) is ${bytes.length - 8} bytes, the manifest says ${bytes.length}`),
    );
  });
});
