// The report's training curves: progressHistory of each round's train_summary.json, read with its
// schema and size cap, drawn as one line per round of throughput and of loss.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readTrainingCurves } from "../../../operator/report/curves.ts";
import { reportHtml } from "../../../operator/report/html.ts";
import { summarize } from "../../../operator/report/summary.ts";
import { ROUND_FILES } from "../../../operator/api/round-layout.ts";
import { MemoryObjectStore } from "../../../operator/s3/object-store.ts";
import { RoundStore } from "../../../operator/s3/round-store.ts";
import { fixtureRun } from "../../support/report-fixture.ts";

const spec = { artifacts: { s3: { bucket: "runs", prefix: "demo/" } } } as never;
const point = (samplesDone: number, loss: number) => ({
  at: "2026-03-01T12:00:00Z",
  samplesDone,
  steps: samplesDone / 32,
  samplesPerSecond: 100 + samplesDone / 100,
  dataWaitShare: 0.1,
  loss,
  lr: 1e-3,
});

test("each round's progressHistory becomes a throughput and a loss curve; rounds without one draw nothing", async () => {
  const store = new MemoryObjectStore();
  const summary = (points: unknown[]) => JSON.stringify({ samplesSeen: 96, progressHistory: points });
  await store.put(
    "s3://runs/demo/rounds/0000/train_summary.json",
    summary([point(32, 3), point(64, 2.5), point(96, 2)]),
  );
  await store.put("s3://runs/demo/rounds/0001/train_summary.json", summary([point(32, 2.4), point(96, 1.9)]));
  await store.put("s3://runs/demo/rounds/0002/train_summary.json", JSON.stringify({ samplesSeen: 96 })); // before issue 26
  await store.put("s3://runs/demo/rounds/0003/train_summary.json", summary([{ samplesDone: "many" }])); // not its shape
  const curves = await readTrainingCurves(
    store,
    spec,
    [0, 1, 2, 3, 4].map((index) => ({ index })),
  );
  assert.deepEqual(
    curves.map((c) => [c.round, c.points.map((p) => p.samplesDone)]),
    [
      [0, [32, 64, 96]],
      [1, [32, 96]],
    ],
  );
  const run = { ...fixtureRun("CumulativeAll", 0), training: curves };
  const html = reportHtml({
    title: "t",
    generatedAt: "now",
    runs: [run],
    summaries: summarize([run], ["CumulativeAll"]),
  });
  for (const kind of ["throughput", "loss"]) {
    const svg = new RegExp(`<svg class="curves" data-kind="${kind}"[^]*?</svg>`).exec(html)?.[0] ?? "";
    const lines = [...svg.matchAll(/<polyline class="curve" data-round="(\d+)"[^>]*points="([^"]*)"/g)];
    assert.deepEqual(
      lines.map((m) => [m[1], m[2]!.split(" ").length]),
      [
        ["0", 3],
        ["1", 2],
      ],
      kind,
    );
  }
  const none = reportHtml({ title: "t", generatedAt: "now", runs: [fixtureRun("CumulativeAll", 0)], summaries: [] });
  assert.ok(!none.includes("Training curves"), "no section without curves");
});

test("the report and the controller read train_summary.json with one schema: an unusable progressHistory is dropped, not the summary", async () => {
  const store = new MemoryObjectStore();
  const skippedSamples = { total: 1, limit: 10, byReason: { noImage: 1 } };
  await store.put(
    "s3://runs/demo/rounds/0000/train_summary.json",
    JSON.stringify({ samplesSeen: 96, skippedSamples, progressHistory: [{ samplesDone: "many" }] }),
  );
  const read = await new RoundStore(store, { bucket: "runs", prefix: "demo/" }).readDocument(0, ROUND_FILES.summary);
  assert.ok(read && "value" in read, "the controller still reads the summary");
  assert.deepEqual(read.value.skippedSamples, skippedSamples);
  assert.equal(read.value.progressHistory, undefined);
  assert.deepEqual(await readTrainingCurves(store, spec, [{ index: 0 }]), [], "the report draws nothing for it");
});
