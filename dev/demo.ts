// The main job on the local default setup (`npm run demo`): the local cluster and MinIO, the CRD,
// the operator and the local executor, then examples/local-demo.yaml fed three synthetic time
// slices one after another. Each slice starts a round that warm-starts from the previous one.
// Prints the rounds as they happen, then a short summary and the path of the HTML report (full TiC
// matrix, round timeline with gates and promotions, compute saving); stops the processes at the end
// (the cluster keeps running: `npm run cluster:down`).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { REPO_ROOT, applyCrds, getRun, kubectl, kubectlOk, waitFor } from "../test/support/cluster.ts";
import { DONE_PHASES, startExecutor, startOperator, writeSlices } from "../test/support/local-run.ts";
import { s3Client } from "../test/support/s3.ts";
import type { ContinualClipRunSpec, RoundStatus } from "../operator/api/continual-clip-run.ts";
import { describeSlices } from "../operator/controller/status-bounds.ts";
import { readTrainingCurves } from "../operator/report/curves.ts";
import { reportHtml } from "../operator/report/html.ts";
import { rescoreRun } from "../operator/report/rescore.ts";
import { summarize } from "../operator/report/summary.ts";
import { S3ObjectStore } from "../operator/s3/object-store.ts";

const NS = "default";
const manifest = YAML.parse(readFileSync(path.join(REPO_ROOT, "examples/local-demo.yaml"), "utf8"));
manifest.spec.source.s3.endpoint = process.env.S3_ENDPOINT;
const name: string = manifest.metadata.name;
const slices = ["2016", "2017", "2018"];

applyCrds();
for (const bucket of [
  manifest.spec.source.s3.bucket,
  manifest.spec.artifacts.s3.bucket,
  manifest.spec.promotion.s3.bucket,
]) {
  await s3Client()
    .send(new CreateBucketCommand({ Bucket: bucket }))
    .catch((e: { name?: string }) => {
      if (e.name !== "BucketAlreadyOwnedByYou" && e.name !== "BucketAlreadyExists") throw e;
    });
}
if (kubectl(["get", "secret", "s3-creds", "-n", NS]).code !== 0) {
  kubectlOk([
    "create",
    "secret",
    "generic",
    "s3-creds",
    "-n",
    NS,
    `--from-literal=AWS_ACCESS_KEY_ID=${process.env.AWS_ACCESS_KEY_ID}`,
    `--from-literal=AWS_SECRET_ACCESS_KEY=${process.env.AWS_SECRET_ACCESS_KEY}`,
  ]);
}
const executor = startExecutor([NS]);
const operator = startOperator([NS]);
console.log(`operator log: ${operator.logFile}\nexecutor log: ${executor.logFile}`);
kubectlOk(["apply", "-f", "-"], JSON.stringify(manifest));

type Round = {
  index: number;
  phase: string;
  /** Absent in the compact entries of older rounds (docs/scale.md, "Bounded status"). */
  slices?: string[];
  initCheckpoint?: string;
  reason?: string;
  message?: string;
  metrics?: Record<string, number>;
  promotedVersion?: number;
};
const rounds = () => (getRun(NS, name)?.status as { rounds?: Round[] } | undefined)?.rounds ?? [];
try {
  for (const id of slices) {
    const finished = (r: Round) => DONE_PHASES.has(r.phase) || r.phase === "Rejected";
    const trainedBefore = rounds().filter(finished).length;
    if (rounds().some((r) => r.slices?.includes(id) && finished(r))) {
      console.log(`slice ${id}: already trained`);
      continue;
    }
    console.log(`\nslice ${id} lands in s3://${manifest.spec.source.s3.bucket}/slices/${id}/`);
    writeSlices(manifest.spec.source.s3.bucket, [id], 1024);
    const started = Date.now();
    await waitFor(
      `round on ${id}`,
      () => {
        const failed = rounds().find((r) => r.phase === "Failed" && r.slices?.includes(id));
        if (failed) throw new Error(`round ${failed.index} failed: ${failed.reason}: ${failed.message}`);
        return rounds().filter(finished).length > trainedBefore || undefined;
      },
      600_000,
      1000,
    );
    const r = rounds().at(-1)!;
    console.log(
      `round ${r.index} on ${describeSlices(r)}: ${r.phase}${r.reason ? ` (${r.reason})` : ""} ` +
        `in ${Math.round((Date.now() - started) / 1000)} s, init ${r.initCheckpoint ?? "from scratch"}`,
    );
    console.log(
      `  metrics ${JSON.stringify(r.metrics ?? {})}${r.promotedVersion ? `, promoted as v${r.promotedVersion}` : ""}`,
    );
  }
  console.log("\n" + kubectlOk(["get", "ccr", name, "-n", NS]));
  await summarizeDemo();
} finally {
  await operator.stop();
  await executor.stop();
}

/** A few readable lines and the HTML report (full TiC matrix, timeline, compute) instead of raw JSON. */
async function summarizeDemo(): Promise<void> {
  const run = getRun(NS, name)!;
  const status = (run.status ?? {}) as {
    rounds?: RoundStatus[];
    compute?: { samplesSeen: number; oracleEquivalentSamples: number; savingVsOracle: number };
    promoted?: { version: number; round: number };
  };
  const rs = status.rounds ?? [];
  const file = await rescoreRun(new S3ObjectStore(s3Client()), {
    run: { namespace: NS, name },
    spec: run.spec as unknown as ContinualClipRunSpec,
    rounds: rs,
    now: new Date().toISOString(),
  });
  const pts = (x: number | null | undefined) => (typeof x === "number" ? (100 * x).toFixed(1) : "n/a");
  console.log(
    `\nSummary of ${name} (${manifest.spec.strategy.replay}, ` +
      `C = ${manifest.spec.strategy.samplesPerRound} samples per round)`,
  );
  for (const r of rs) {
    const id = r.metrics?.["retrieval.id.meanRecallAt1"];
    const verdict = r.promotedVersion ? `promoted as v${r.promotedVersion}` : r.phase;
    console.log(`  round ${r.index} on ${describeSlices(r)}: ID mean R@1 ${pts(id)}%, ${verdict}`);
  }
  const m = file.matrix.summary;
  const chance = file.chance === null ? "" : ` (chance ${pts(file.chance)})`;
  console.log(
    `  full TiC matrix: ID ${pts(m.id)}, backward ${pts(m.backward)}, forward ${pts(m.forward)} mean R@1${chance}`,
  );
  const c = status.compute;
  if (c)
    console.log(
      `  compute: ${c.samplesSeen} samples seen; an Oracle retrained every round: ` +
        `${c.oracleEquivalentSamples} (${c.savingVsOracle.toFixed(2)}x)`,
    );
  const cm = kubectl(["get", "configmap", manifest.spec.promotion.configMapName, "-n", NS, "-o", "jsonpath={.data}"]);
  const serving = status.promoted ? `v${status.promoted.version} (round ${status.promoted.round})` : "nothing promoted";
  console.log(
    `  serving: ${serving}, ` +
      `ConfigMap ${manifest.spec.promotion.configMapName} ${cm.code === 0 ? "present" : "absent"}`,
  );
  const out = path.join(REPO_ROOT, ".local", "demo");
  mkdirSync(out, { recursive: true });
  const result = {
    name,
    run: name,
    strategy: manifest.spec.strategy.replay,
    seed: "0",
    matrix: file.matrix,
    rounds: rs,
    compute: c,
    training: await readTrainingCurves(new S3ObjectStore(s3Client()), run.spec as unknown as ContinualClipRunSpec, rs),
    samplesSeen: c?.samplesSeen ?? 0,
    savingVsOracle: c?.savingVsOracle ?? 0,
    chance: file.chance ?? undefined,
  };
  const html = reportHtml({
    title: `npm run demo: ${name}`,
    generatedAt: new Date().toISOString(),
    runs: [result],
    summaries: summarize([result], [result.strategy]),
  });
  writeFileSync(path.join(out, "report.html"), html);
  console.log(`  report: ${path.join(out, "report.html")}`);
}
