// Fixtures of the round state machine tests (next-round, after-training, round-status): a spec, slices,
// plans, observed rounds and decideRounds input.
import { continualClipRunSpec, type ContinualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import type { RoundPlan } from "../../../operator/api/round-plan.ts";
import type { decideRounds, RoundObservation, RoundsInput } from "../../../operator/controller/rounds.ts";
import type { Slice } from "../../../operator/data/validate.ts";
import type { EvalResult } from "../../../operator/api/eval-result.ts";

export const NOW = new Date("2026-05-01T00:00:00Z");
export const RUN = { name: "demo", namespace: "ns", uid: "uid-1", generation: 1 };

export function spec(overrides: Record<string, any> = {}): ContinualClipRunSpec {
  return continualClipRunSpec.parse({
    source: { s3: { bucket: "data", prefix: "slices/" } },
    model: { architecture: "ticclip-tiny", initialCheckpoint: "s3://models/init.pt" },
    strategy: { samplesPerRound: 1000, ...(overrides.strategy ?? {}) },
    trainer: { image: "trainer:1", gpusPerNode: 1 },
    artifacts: { s3: { bucket: "runs", prefix: "demo/" } },
    ...Object.fromEntries(Object.entries(overrides).filter(([k]) => k !== "strategy")),
  });
}

export const slice = (id: string, samples = 100): Slice => ({
  id,
  uri: `s3://data/slices/${id}/`,
  createdAt: "2026-01-01T00:00:00Z",
  numSamples: samples,
  shards: [{ key: "shard-0.tar", uri: `s3://data/slices/${id}/shard-0.tar`, samples, bytes: 10 }],
  fingerprint: id,
});

export function planFor(index: number, newSlices: string[], init: string | null): RoundPlan {
  return {
    schemaVersion: 1,
    run: { namespace: "ns", name: "demo", uid: "uid-1" },
    round: index,
    newSlices,
    replay: "CumulativeAll",
    model: { architecture: "ticclip-tiny", initCheckpoint: init },
    data: {
      sources: [
        { sliceId: newSlices[0]!, shards: [{ uri: "s3://x/y.tar", samples: 100 }], weight: 1, expectedShare: 1 },
      ],
      samples: 1000,
    },
    optimizer: { lr: 5e-4, weightDecay: 0.2, warmupSteps: 0, batchSize: 8192, precision: "amp_bf16" },
    output: { uri: `s3://runs/demo/rounds/${String(index).padStart(4, "0")}/` },
    checkpointIntervalMinutes: 30,
    seed: index,
    s3: { region: "us-east-1", endpoint: null },
  };
}

export function evaluated(index: number, slices: string[], recall: number): EvalResult {
  const scores = {
    uri: `s3://runs/demo/rounds/000${index}/`,
    architecture: "ticclip-tiny",
    embeddingDim: 32,
    sha256: { image: "a", text: "b" },
    retrieval: [],
    zeroShot: [],
    metrics: { "retrieval.id.meanRecallAt1": recall },
    notApplicable: {},
  };
  return {
    schemaVersion: 1,
    status: "Succeeded",
    round: index,
    roundUri: scores.uri,
    roundSlices: slices,
    evaluatedAt: "2026-04-01T02:00:00Z",
    k: [1],
    candidate: scores,
    matrix: {
      metric: "meanRecallAt1",
      rounds: [index],
      roundSlices: [slices],
      slices,
      values: [[recall]],
      summary: { id: recall, backward: null, forward: null },
    },
    timing: { seconds: 1, imagesEncoded: 1, textsEncoded: 1, executionProvider: "cpu" },
  };
}

/** Trained and evaluated (recall 0.5), not promoted. */
export const trained = (
  index: number,
  slices: string[],
  init: string | null = null,
  recall = 0.5,
): RoundObservation => ({
  index,
  files: new Set([
    "plan.json",
    "_SUCCESS",
    "checkpoint.pt",
    "image_encoder.onnx",
    "text_encoder.onnx",
    "model.json",
    "eval.json",
    "compute.json",
  ]),
  evaluation: evaluated(index, slices, recall),
  // The encoders in the folder are the ones eval.json scored.
  digests: { image: "a", text: "b" },
  plan: planFor(index, slices, init),
  job: {
    name: `demo-r000${index}-train`,
    active: 0,
    succeeded: 1,
    failed: 0,
    complete: true,
    startTime: "2026-04-01T00:00:00Z",
    completionTime: "2026-04-01T01:00:00Z",
  },
});
export const running = (index: number, slices: string[]): RoundObservation => ({
  index,
  files: new Set(["plan.json"]),
  plan: planFor(index, slices, null),
  job: { name: `demo-r000${index}-train`, active: 1, succeeded: 0, failed: 0, complete: false },
});
export const failedJob = (index: number, slices: string[], init: string | null = null): RoundObservation => ({
  index,
  files: new Set(["plan.json"]),
  plan: planFor(index, slices, init),
  job: {
    name: `demo-r000${index}-train`,
    active: 0,
    succeeded: 0,
    failed: 3,
    complete: false,
    failure: { reason: "BackoffLimitExceeded", message: "trainer exited 137 (OOMKilled)" },
  },
});
export const failedRecorded = (
  index: number,
  slices: string[],
  init: string | null,
  generation = 1,
): RoundObservation => ({
  index,
  files: new Set(["plan.json", "failed.json"]),
  plan: planFor(index, slices, init),
  failure: { reason: "BackoffLimitExceeded", message: "x", generation, failedAt: "2026-04-01T00:00:00Z" },
});

export const input = (o: Partial<RoundsInput>): RoundsInput => ({
  run: RUN,
  spec: spec(),
  slices: [],
  rounds: [],
  previous: undefined,
  now: NOW,
  ...o,
});
// Bookkeeping writes (verdict.json) are checked on their own below.
export const kinds = (d: ReturnType<typeof decideRounds>) =>
  d.actions.filter((a) => a.kind !== "RecordVerdict").map((a) => `${a.kind}:${a.round}`);

export const gated = (mode: "Auto" | "Manual") =>
  spec({
    evaluation: { gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0.3 }] },
    promotion: { mode, s3: { bucket: "models", prefix: "clip/" } },
  });

export const THREE = [slice("2016"), slice("2017"), slice("2018")];

export const recordOf = (d: ReturnType<typeof decideRounds>) =>
  (d.actions.find((a) => a.kind === "RecordFailure") as { record: { slicesKnown?: string[] } }).record;
