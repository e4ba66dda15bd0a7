import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { REPO_ROOT } from "../../../operator/api/gen-artifacts.ts";
import type { TrainerProgress } from "../../../operator/api/round-documents.ts";
import { decideProgress, formatEta } from "../../../operator/controller/progress.ts";
import type { RoundRecord } from "../../../operator/controller/types.ts";

const example = YAML.parse(readFileSync(path.join(REPO_ROOT, "examples/minimal.yaml"), "utf8"));
const spec = continualClipRunSpec.parse(example.spec); // stallTimeout 30m by default
const restarting = continualClipRunSpec.parse({
  ...example.spec,
  trainer: { ...example.spec.trainer, restartOnStall: true },
});
const T0 = new Date("2026-03-01T12:00:00Z");
const at = (minutes: number) => new Date(T0.getTime() + minutes * 60_000);
const active = (phase: RoundRecord["phase"] = "Training"): RoundRecord =>
  ({ index: 3, phase, job: "r-r0003-train", slices: ["2016"], replay: "Sequential" }) as RoundRecord;
const report = (samplesDone: number, over: Partial<TrainerProgress> = {}): TrainerProgress => ({
  schemaVersion: 1,
  phase: "training",
  samplesDone,
  samplesTotal: 1000,
  steps: samplesDone / 10,
  stepsTotal: 100,
  samplesPerSecond: 2,
  dataWaitShare: 0.1,
  loss: 3.5,
  lr: 1e-4,
  peakMemoryBytes: null,
  skippedSamples: { total: 0, byReason: {} },
  updatedAt: "2026-03-01T11:59:50Z",
  ...over,
});

/** One pass after another, each on the status the last wrote: what the operator does over time. */
function passes(steps: Array<{ minutes: number; done: number }>, s = spec) {
  let previous: Parameters<typeof decideProgress>[0]["previous"];
  let previousCondition: Parameters<typeof decideProgress>[0]["previousCondition"];
  return steps.map(({ minutes, done }) => {
    const d = decideProgress({
      spec: s,
      active: active(),
      observed: { round: 3, value: report(done) },
      previous,
      previousCondition,
      now: at(minutes),
    });
    previous = { index: 3, phase: "Training", ...(d.progress ? { progress: d.progress } : {}) };
    previousCondition = d.condition && {
      ...d.condition,
      observedGeneration: 1,
      lastTransitionTime: at(minutes).toISOString(),
    };
    return d;
  });
}

describe("decideProgress", () => {
  test("shows percent, rate, ETA from the recent rate and loss of the training round", () => {
    const [d] = passes([{ minutes: 0, done: 420 }]);
    assert.deepEqual(d!.progress, {
      phase: "training",
      percent: "42%",
      samplesDone: 420,
      samplesTotal: 1000,
      samplesPerSecond: 2,
      eta: "4m50s",
      loss: 3.5,
      updatedAt: "2026-03-01T11:59:50Z",
      advancedAt: "2026-03-01T12:00:00Z",
    });
    assert.equal(d!.condition?.status, "False");
    assert.deepEqual(d!.events, []);
  });

  test("a run with no training round has no progress and no TrainerStalled condition", () => {
    for (const a of [undefined, active("Pending")]) {
      const d = decideProgress({
        spec,
        active: a,
        observed: undefined,
        previous: undefined,
        previousCondition: undefined,
        now: T0,
      });
      assert.deepEqual(d, { events: [] });
    }
  });

  test("a trained round shows 100% and done, whatever the last report said", () => {
    const [d] = passes([{ minutes: 0, done: 960 }]);
    const trained = decideProgress({
      spec,
      active: active("Trained"),
      observed: undefined,
      previous: { index: 3, phase: "Training", progress: d!.progress! },
      previousCondition: undefined,
      now: at(1),
    });
    assert.equal(trained.progress?.percent, "100%");
    assert.equal(trained.progress?.phase, "done");
    assert.equal(trained.progress?.eta, undefined);
    assert.equal(trained.condition, undefined);
  });

  test("samples that do not advance for stallTimeout, on the operator's clock, stall the trainer once", () => {
    const ds = passes([
      { minutes: 0, done: 100 },
      { minutes: 10, done: 200 },
      { minutes: 39, done: 200 },
      { minutes: 40, done: 200 },
      { minutes: 41, done: 200 },
    ]);
    assert.deepEqual(
      ds.map((d) => d.condition?.status),
      ["False", "False", "False", "True", "True"],
    );
    assert.equal(ds[3]!.progress?.advancedAt, "2026-03-01T12:10:00Z");
    assert.deepEqual(
      ds.flatMap((d) => d.events.map((e) => [e.type, e.reason])),
      [["Warning", "TrainerStalled"]],
    );
    assert.match(ds[3]!.condition!.message, /round 3: 200 of 1000 samples .* not advanced since 2026-03-01T12:10:00Z/);
    assert.ok(
      ds.every((d) => d.restart === undefined),
      "no eviction without restartOnStall",
    );
  });

  test("samples advancing again end the stall", () => {
    const ds = passes([
      { minutes: 0, done: 100 },
      { minutes: 31, done: 100 },
      { minutes: 32, done: 150 },
    ]);
    assert.deepEqual(
      ds.map((d) => d.condition?.status),
      ["False", "True", "False"],
    );
  });

  test("with restartOnStall a stalled trainer is evicted once per stall timeout, and stays stalled until it advances", () => {
    const ds = passes(
      [
        { minutes: 0, done: 100 },
        { minutes: 30, done: 100 },
        { minutes: 31, done: 100 },
        { minutes: 59, done: 100 },
        { minutes: 60, done: 100 },
        { minutes: 61, done: 110 },
      ],
      restarting,
    );
    assert.deepEqual(
      ds.map((d) => d.restart?.job),
      [undefined, "r-r0003-train", undefined, undefined, "r-r0003-train", undefined],
    );
    assert.deepEqual(
      ds.map((d) => d.condition?.status),
      ["False", "True", "True", "True", "True", "False"],
    );
    assert.equal(ds.flatMap((d) => d.events).length, 1, "one TrainerStalled event for one stall");
  });

  test("a phase change counts as progress (exporting after the last step)", () => {
    let previous: Parameters<typeof decideProgress>[0]["previous"];
    const phases: TrainerProgress["phase"][] = ["training", "exporting"];
    const ds = phases.map((phase, i) => {
      const d = decideProgress({
        spec,
        active: active(),
        observed: { round: 3, value: report(1000, { phase }) },
        previous,
        previousCondition: undefined,
        now: at(i * 31),
      });
      previous = { index: 3, phase: "Training", progress: d.progress! };
      return d;
    });
    assert.equal(ds[1]!.condition?.status, "False");
    assert.equal(ds[1]!.progress?.advancedAt, at(31).toISOString().replace(".000", ""));
  });

  test("an unusable progress.json is shown as the progress problem, keeping what was known", () => {
    const [d] = passes([{ minutes: 0, done: 100 }]);
    const next = decideProgress({
      spec,
      active: active(),
      observed: { round: 3, problem: "s3://b/rounds/0003/progress.json: not JSON" },
      previous: { index: 3, phase: "Training", progress: d!.progress! },
      previousCondition: undefined,
      now: at(1),
    });
    assert.equal(next.progress?.samplesDone, 100);
    assert.equal(next.progress?.problem, "s3://b/rounds/0003/progress.json: not JSON");
    const long = decideProgress({
      spec,
      active: active(),
      observed: { round: 3, problem: `S3Timeout: ${"x".repeat(5000)}` },
      previous: { index: 3, phase: "Training", progress: d!.progress! },
      previousCondition: undefined,
      now: at(1),
    });
    assert.ok(long.progress!.problem!.length <= 1024, "status keeps a bounded copy of a long S3 error");
  });

  test("progress of another round (the previous one) is not shown for this one", () => {
    const d = decideProgress({
      spec,
      active: active(),
      observed: { round: 2, value: report(500) },
      previous: undefined,
      previousCondition: undefined,
      now: T0,
    });
    assert.equal(d.progress, undefined);
  });
});

test("formatEta writes durations as spec durations are written", () => {
  assert.deepEqual([0, 0.2, 59, 60, 61, 3600, 4500, 90061].map(formatEta), [
    "0s",
    "1s",
    "59s",
    "1m",
    "1m1s",
    "1h",
    "1h15m",
    "25h1m1s",
  ]);
});
