// The full TiC matrix on demand against real components: rounds trained by the real trainer on
// drifting synthetic slices in MinIO (the evaluation fixture), re-scored by rescoreRun on every
// slice's pack, including the later slices no per-round evaluation scores.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import path from "node:path";
import { rescoreRun, ticMatrixFile } from "../../operator/report/rescore.ts";
import { S3ObjectStore } from "../../operator/s3/object-store.ts";
import { REPO_ROOT } from "../support/cluster.ts";
import { venvPython } from "../support/local-run.ts";
import { createBucket, s3Client } from "../support/s3.ts";

const client = s3Client();
const store = new S3ObjectStore(client);
let bucket: string;
let slices: string[];

before(async () => {
  bucket = await createBucket(client, "rescore");
  const fixture = path.join(REPO_ROOT, "test/integration/evaluation/fixture.py");
  const res = spawnSync(venvPython(), [fixture, "build", "--bucket", bucket, "--rounds", "2"], {
    encoding: "utf8",
    env: { ...process.env, PYTHONPATH: process.env.PYTHONPATH || path.join(REPO_ROOT, "trainer-image/src") },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (res.status !== 0) throw new Error(`fixture.py failed (${res.status}):\n${res.stderr.slice(-4000)}`);
  slices = (JSON.parse(res.stdout.trim().split("\n").at(-1)!) as { slices: string[] }).slices;
});

after(() => client.destroy());

describe("rescoreRun", () => {
  const spec = () => ({
    source: { s3: { bucket, prefix: "slices/", region: "us-east-1" } },
    artifacts: { s3: { bucket, prefix: "runs/" } },
  });

  test("scores every trained round on every slice and writes tic-matrix.json beside rounds/", async () => {
    const rounds = [
      { index: 0, slices: [slices[0]!], checkpoint: `s3://${bucket}/runs/rounds/0000/checkpoint.pt` },
      { index: 1, slices: [slices[1]!], checkpoint: `s3://${bucket}/runs/rounds/0001/checkpoint.pt` },
      { index: 2, slices: [slices[2]!] }, // not trained: ignored
    ];
    const file = await rescoreRun(store, {
      run: { namespace: "default", name: "eval-test" },
      spec: spec() as never,
      rounds,
      slices,
      now: "2026-06-01T00:00:00Z",
    });
    const m = file.matrix;
    assert.deepEqual(m.rounds, [0, 1]);
    assert.deepEqual(m.slices, slices);
    for (const row of m.values) for (const v of row) assert.ok(typeof v === "number" && v >= 0 && v <= 1, `${v}`);
    const v = m.values as number[][];
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(Math.abs(m.summary.id! - mean([v[0]![0]!, v[1]![1]!])) < 1e-12);
    assert.ok(Math.abs(m.summary.backward! - v[1]![0]!) < 1e-12);
    assert.ok(Math.abs(m.summary.forward! - mean([v[0]![1]!, v[0]![2]!, v[0]![3]!, v[1]![2]!, v[1]![3]!])) < 1e-12);
    assert.equal(file.packs.length, slices.length);
    assert.ok(file.chance !== null && file.chance > 0 && file.chance < 1);
    assert.deepEqual(file.skipped, []);
    const raw = await store.get(`s3://${bucket}/runs/tic-matrix.json`);
    assert.ok(raw, "tic-matrix.json written");
    assert.deepEqual(ticMatrixFile.parse(JSON.parse(new TextDecoder().decode(raw))), file);
  });

  test("a round whose model is missing is listed as skipped with the evaluator's reason", async () => {
    const file = await rescoreRun(store, {
      run: { namespace: "default", name: "eval-test" },
      spec: spec() as never,
      rounds: [
        { index: 0, slices: [slices[0]!], checkpoint: `s3://${bucket}/runs/rounds/0000/checkpoint.pt` },
        { index: 7, slices: [slices[1]!], checkpoint: `s3://${bucket}/runs/rounds/0007/checkpoint.pt` },
      ],
      now: "2026-06-01T00:00:00Z",
    });
    assert.deepEqual(file.matrix.rounds, [0]);
    assert.equal(file.skipped.length, 1);
    assert.equal(file.skipped[0]!.round, 7);
    assert.match(file.skipped[0]!.reason, /^[A-Z][A-Za-z]+$/);
  });
});
