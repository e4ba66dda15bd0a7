// docs/your-data.md, run as written: every ```sh block of the guide, in order, in bash, against the
// local cluster, from img2dataset shards and an open_clip hub snapshot in S3 (made here) to a
// promoted model. What the guide says for a GPU cluster is scaled down by the substitutions below;
// each must still match the guide's text, so the test fails when the guide changes under it.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { REPO_ROOT, applyCrds, createNamespace, getRun, requireEnv } from "../support/cluster.ts";
import {
  TRAINER_IMAGE,
  createBucket,
  startExecutor,
  startOperator,
  venvPython,
  type Proc,
} from "../support/local-run.ts";
import { s3Client } from "../support/s3.ts";

let ns = "";
let executor: Proc;
let operator: Proc;

before(() => {
  applyCrds();
  ns = createNamespace("your-data");
  executor = startExecutor([ns]);
  operator = startOperator([ns]); // no evaluator image: rounds are scored in the operator process
});
after(async () => {
  await operator?.stop();
  await executor?.stop();
});

/** The guide's shell blocks, in order. */
function guideCommands(doc: string): string[] {
  return [...doc.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

function substitute(doc: string, subs: [string, string][]): string {
  let out = doc;
  for (const [from, to] of subs) {
    assert.ok(out.includes(from), `docs/your-data.md no longer contains ${JSON.stringify(from)}`);
    out = out.split(from).join(to);
  }
  return out;
}

async function getJson(bucket: string, key: string): Promise<any> {
  const res = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return JSON.parse(await res.Body!.transformToString());
}

function python(code: string, args: string[]): string {
  const res = spawnSync(venvPython(), ["-c", code, ...args], {
    encoding: "utf8",
    env: {
      ...process.env,
      PYTHONPATH: ["trainer-image/src", "trainer-image/tests"].map((p) => path.join(REPO_ROOT, p)).join(":"),
    },
    timeout: 300_000,
  });
  assert.equal(res.status, 0, res.stderr);
  return res.stdout;
}

test("docs/your-data.md: img2dataset shards and a hub checkpoint in S3 to a promoted model", async () => {
  const data = await createBucket("yd-data");
  const models = await createBucket("yd-models");
  const runs = await createBucket("yd-runs");

  // What the guide starts from: img2dataset output mirrored to s3://my-data/laion/2021/ (3 shards,
  // failed downloads leaving gaps in the keys) and an open_clip hub snapshot in s3://my-models/.
  python(
    `
import json, sys, torch
from safetensors.torch import save_file
from img2dataset import sample, write_pool
from ticclip_trainer import models
from ticclip_trainer.s3io import S3, S3Settings
s3 = S3(S3Settings.from_env())
data, models_bucket = sys.argv[1], sys.argv[2]
write_pool(f"s3://{data}/laion/2021/", [[sample(s * 100 + i) for i in range(40)] for s in range(3)], s3, failed=4)
torch.manual_seed(7)
sd = models.create("ticclip-tiny").state_dict()
save_file({k: v.contiguous() for k, v in sd.items()}, "/tmp/yd-tiny.safetensors")
hub = f"s3://{models_bucket}/clip-tiny-hub/"
s3.upload("/tmp/yd-tiny.safetensors", hub + "open_clip_model.safetensors")
s3.put_bytes(hub + "open_clip_config.json", json.dumps({"model_cfg": models.model_config("ticclip-tiny"), "preprocess_cfg": {}}).encode())
s3.put_bytes(hub + "README.md", b"# a model card")
`,
    [data, models],
  );

  const doc = substitute(readFileSync(path.join(REPO_ROOT, "docs/your-data.md"), "utf8"), [
    ["s3://my-data/", `s3://${data}/`],
    ["bucket: my-data", `bucket: ${data}`],
    ["CLIP-ViT-B-32-laion2B-s34B-b79K", "clip-tiny-hub"],
    ["s3://my-models/", `s3://${models}/`],
    ["bucket: my-models", `bucket: ${models}`],
    ["bucket: my-runs", `bucket: ${runs}`],
    ["ViT-B-32", "ticclip-tiny"],
    ["--eval-fraction 0.002", "--eval-fraction 0.1"], // a pack from 120 samples
    ["samplesPerRound: 12000000", "samplesPerRound: 128"],
    ["optimizer: {batchSize: 4096, lr: 1.0e-5}", "optimizer: {batchSize: 32, lr: 1.0e-3, precision: fp32}"],
    ["gpusPerNode: 8", "gpusPerNode: 0"],
    ["registry.example.com/ticclip-trainer:0.1.0", TRAINER_IMAGE],
    ["# endpoint: https://s3.example.com", `endpoint: ${requireEnv("S3_ENDPOINT")}`],
    ["--timeout=24h", "--timeout=15m"],
  ]);
  const blocks = guideCommands(doc);
  assert.equal(blocks.length, 2, "the guide has two command blocks: register the shards, start the run");

  const work = mkdtempSync(path.join(tmpdir(), "your-data-"));
  const venvBin = path.dirname(venvPython());
  // `python` is the trainer venv's, `kubectl` the cluster's, in the test's namespace.
  const prelude = `set -euo pipefail
kubectl() { "$KUBECTL" --kubeconfig "$KUBECONFIG" -n "${ns}" "$@"; }
`;
  for (const block of blocks) {
    const res = spawnSync("bash", ["-c", prelude + block], {
      cwd: work,
      encoding: "utf8",
      env: {
        ...process.env,
        PATH: `${venvBin}:${process.env.PATH}`,
        PYTHONPATH: path.join(REPO_ROOT, "trainer-image/src"),
      },
      timeout: 20 * 60_000,
    });
    assert.equal(res.status, 0, `guide block failed:\n${block}\nstdout: ${res.stdout}\nstderr: ${res.stderr}`);
    if (block.includes("register-shards")) {
      const report = JSON.parse(res.stdout);
      assert.equal(report.sliceId, "2021");
      assert.equal(report.samples + report.heldOut, 120);
      assert.ok(report.heldOut > 0 && report.eval.pack);
    }
  }

  const status = getRun(ns, "your-data")!.status as any;
  assert.equal(status.promoted.version, 1);
  assert.equal(status.rounds[0].phase, "Promoted");
  const plan = await getJson(runs, "your-data/rounds/0000/plan.json");
  assert.equal(plan.model.initCheckpoint, `s3://${models}/clip-tiny-hub/`);
  assert.equal(plan.data.sources[0].heldOutFraction, 0.1);
  assert.equal(plan.data.maxSkippedFraction, 0.01);
  const summary = await getJson(runs, "your-data/rounds/0000/train_summary.json");
  assert.equal(summary.samplesSeen, 128);
  assert.ok(summary.skippedSamples.heldOutPassedOver > 0, "the held-out samples are not trained on");
  // The round's status entry carries the summary's skip counts (read from S3 by the operator).
  const { total, limit, byReason } = summary.skippedSamples;
  assert.deepEqual(status.rounds[0].skippedSamples, { total, limit, byReason });
  assert.equal(limit, 1, "1% of 128 samples");
  const expected = python(
    `
import torch
from ticclip_trainer import models
from ticclip_trainer.train import weights_digest
torch.manual_seed(7)
print(weights_digest(models.create("ticclip-tiny")))
`,
    [],
  ).trim();
  assert.equal(summary.initWeightsDigest, expected, "round 0 started from the hub snapshot's weights");
  const evaluation = await getJson(runs, "your-data/rounds/0000/eval.json");
  assert.ok(JSON.stringify(evaluation).includes("2021"), "scored on the slice's held-out pack");
});
