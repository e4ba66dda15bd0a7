// The largest status a ContinualClipRun can have: a run at historyLimit 1000 whose every round is a
// Latest round over thousands of slices with the longest ids, S3 URIs, reasons and messages the
// CRD and the S3 documents allow, with every optional round field set. The status comes from the
// controller's own decide() over these observations, not from a hand-written object, so the unit
// property, the integration test and `npm run bench:status-size` measure what the operator writes.
//
// Memory: 1,000 rounds of 3,000 distinct 128-character ids would be 3 million strings (~400 MB).
// Rounds therefore draw their ids from two shared pools (one for failed rounds, one for the rest):
// a round's status entry does not depend on which ids it lists, only on how many and how long.
import type { ContinualClipRunSpec } from "../../operator/api/continual-clip-run.ts";
import { continualClipRunSpec, STATUS_LIMITS } from "../../operator/api/continual-clip-run.ts";
import type { EvalResult } from "../../operator/api/eval-result.ts";
import type { AliasPointer } from "../../operator/api/promotion.ts";
import { roundUri } from "../../operator/api/round-layout.ts";
import { decide, type Observed } from "../../operator/controller/decide.ts";
import { boundSliceStatus, compactRound, detailedRound } from "../../operator/controller/status-bounds.ts";
import type { FailureRecord, RoundObservation } from "../../operator/controller/types.ts";
import type { DiscoveryResult, InvalidSlice, Slice } from "../../operator/data/discovery.ts";
import type { RawObject } from "../../operator/kube/client.ts";

export const WORST_NOW = new Date("2026-06-01T00:00:00Z");

export type WorstCaseOptions = {
  /** Rounds observed in S3 (status keeps spec.historyLimit = 1000 of them). */
  rounds?: number;
  /** New slices of each round (a Latest round over everything that arrived meanwhile). */
  slicesPerRound?: number;
  /** Invalid slices discovery reports. */
  invalid?: number;
  /** Characters of each free-form reason and message read from S3 (failed.json, eval.json). */
  textLength?: number;
  /** The free-form reason and message themselves (default: textLength of ASCII). */
  reason?: string;
  message?: string;
  /** Run name (at most 63 for a name the tests can create). */
  name?: string;
  namespace?: string;
};

const fill = (prefix: string, n: number, ch = "x") => prefix + ch.repeat(Math.max(0, n - prefix.length));
/** A slice id of the full 128 characters that sorts by n. */
export const longSliceId = (pool: string, n: number) => fill(pool, 128 - 8, "0") + String(n).padStart(8, "0");
const bucket = (name: string) => fill(name, 63, "b");
/** A key prefix of 512 characters: segments of 60 ending in '/'. */
const prefix = (name: string) => `${Array.from({ length: 8 }, (_, i) => fill(`${name}${i}`, 63, "p")).join("/")}/`;

/** The spec of the worst case: every list at its maximum, every name and location at its longest. */
export function worstCaseSpec(): ContinualClipRunSpec {
  const zeroShot = Array.from({ length: 16 }, (_, i) => ({
    name: fill(`zs${i}-`, 63, "z"),
    uri: `s3://${bucket("packs")}/${fill(`zs${i}/`, 1024 - 69, "u")}`,
  }));
  const k = [1, 993, 994, 995, 996, 997, 998, 999];
  const relations = ["id", "backward", "forward", "latest"];
  const gates = relations.flatMap((rel) =>
    ["imageToText", "textToImage"].flatMap((dir) =>
      k.slice(4).map((kk) => ({ metric: `retrieval.${rel}.${dir}RecallAt${kk}`, op: ">=", value: 0.5 })),
    ),
  );
  return continualClipRunSpec.parse({
    source: { s3: { bucket: bucket("source"), prefix: prefix("src") } },
    model: {
      architecture: fill("ViT-B-16-", 128, "m"),
      initialCheckpoint: `s3://${bucket("models")}/${fill("init/", 1024 - 69, "i")}`,
    },
    strategy: { samplesPerRound: 1e15, roundPolicy: "Latest", maxAttemptsPerSlice: 1 },
    trainer: { image: "trainer:1", gpusPerNode: 1 },
    evaluation: { retrieval: { k }, zeroShot, gates },
    promotion: { s3: { bucket: bucket("promoted"), prefix: prefix("pro") }, alias: fill("alias-", 63, "a") },
    artifacts: { s3: { bucket: bucket("artifacts"), prefix: prefix("art") } },
    historyLimit: 1000,
  });
}

function evaluation(spec: ContinualClipRunSpec, index: number, slices: string[], passed: boolean): EvalResult {
  const uri = roundUri(spec.artifacts.s3, index);
  // Every metric the status keeps: meanRecallAt1 per relation, each zero-shot top1/top5, each gated metric.
  const metrics: Record<string, number> = {};
  for (const rel of ["id", "backward", "forward", "latest"]) metrics[`retrieval.${rel}.meanRecallAt1`] = 0.123456789;
  for (const z of spec.evaluation.zeroShot) {
    metrics[`zeroShot.${z.name}.top1`] = 0.123456789;
    metrics[`zeroShot.${z.name}.top5`] = 0.987654321;
  }
  for (const g of spec.evaluation.gates) metrics[g.metric] = passed ? 0.987654321 : 0.123456789;
  const scores = {
    uri,
    architecture: spec.model.architecture,
    embeddingDim: 512,
    sha256: { image: "a".repeat(64), text: "b".repeat(64) },
    retrieval: [],
    zeroShot: [],
    metrics,
    notApplicable: {},
  };
  return {
    schemaVersion: 1,
    status: "Succeeded",
    round: index,
    roundUri: uri,
    roundSlices: slices,
    evaluatedAt: "2026-05-01T02:00:00.123456789Z",
    k: spec.evaluation.retrieval.k,
    candidate: scores,
    matrix: {
      metric: "meanRecallAt1",
      rounds: [index],
      roundSlices: [slices.slice(-1)],
      slices: slices.slice(-1),
      values: [[0.123456789]],
      summary: { id: 0.123456789, backward: 0.123456789, forward: 0.123456789 },
    },
    timing: { seconds: 1, imagesEncoded: 1, textsEncoded: 1, executionProvider: "cpu" },
  } as EvalResult;
}

/** The run object and what the controller observes of it: decide(run, observed, WORST_NOW) is the worst status. */
export function worstCase(o: WorstCaseOptions = {}): {
  run: RawObject;
  observed: Observed;
  spec: ContinualClipRunSpec;
} {
  const rounds = o.rounds ?? 1000;
  const perRound = o.slicesPerRound ?? 3000;
  const text = o.textLength ?? 32_768;
  const name = o.name ?? fill("worst-", 63, "w");
  const spec = worstCaseSpec();
  const trainedIds = Array.from({ length: perRound }, (_, i) => longSliceId("t", i));
  const failedIds = Array.from({ length: perRound }, (_, i) => longSliceId("f", i));
  const slices: Slice[] = trainedIds.concat(failedIds).map((id) => ({
    id,
    uri: `s3://${spec.source.s3.bucket}/${spec.source.s3.prefix}${id}/`,
    createdAt: "2026-01-01T00:00:00Z",
    numSamples: 1,
    shards: [],
    fingerprint: id,
  }));
  // Folder names too long to be slice ids: invalid, and longer than any valid id.
  const invalid: InvalidSlice[] = Array.from({ length: o.invalid ?? 5000 }, (_, i) => ({
    id: fill(`${i}-`, 1024 - spec.source.s3.prefix.length - "/manifest.json".length, "i"),
    reason: o.reason ?? fill("ManifestInvalid", 200, "R"),
    message: o.message ?? fill(`slice ${i}: `, text, "m"),
  })) as InvalidSlice[];
  const discovery: DiscoveryResult = {
    slices,
    newSlices: [],
    invalid,
    newInvalid: [],
    pending: [],
    warnings: [],
    errors: [],
    unreadable: [],
    // A source that keeps failing: Ready, Degraded and Stalled all carry the longest message.
    health: {
      ok: false,
      reason: "S3Unavailable",
      message: o.message ?? fill("s3: ", text, "s"),
      consecutiveFailures: 99,
    },
    nextPollMs: 1000,
  };
  const longReason = o.reason ?? fill("Reason", 1024, "R");
  const observations: RoundObservation[] = [];
  for (let index = 0; index < rounds; index++) {
    const kind =
      index === rounds - 1 ? "training" : (["promoted", "rejected", "evalFailed", "failed"] as const)[index % 4]!;
    // Failed rounds alternate: over every slice (counted against none of them: such a round cannot
    // say which slice failed it), and over one slice, given up at once (maxAttemptsPerSlice 1).
    const ids = kind !== "failed" ? trainedIds : index % 8 === 3 ? failedIds : [failedIds[(index >> 3) % perRound]!];
    const init = index === 0 ? spec.model.initialCheckpoint! : `${roundUri(spec.artifacts.s3, index - 1)}checkpoint.pt`;
    const plan = {
      // No uid: the plan belongs to the run of this namespace and name, whatever uid it gets.
      run: { namespace: o.namespace ?? "default", name },
      round: index,
      newSlices: ids,
      replay: spec.strategy.replay,
      model: { initCheckpoint: init },
      data: { samples: 1e9 },
    };
    const job = {
      name: `${name.slice(0, 40)}-r${String(index).padStart(4, "0")}-train`,
      active: kind === "training" ? 1 : 0,
      succeeded: kind === "training" || kind === "failed" ? 0 : 1,
      failed: 0,
      complete: kind !== "training" && kind !== "failed",
      startTime: "2026-05-01T00:00:00Z",
      ...(kind === "training" ? {} : { completionTime: "2026-05-01T01:00:00Z" }),
    };
    const files = new Set([
      "plan.json",
      "compute.json",
      ...(kind === "training" || kind === "failed"
        ? []
        : ["_SUCCESS", "eval.json", "checkpoint.pt", "image_encoder.onnx", "text_encoder.onnx", "model.json"]),
    ]);
    const r: RoundObservation = { index, files, plan, job };
    // The encoders the folder holds are the ones eval.json scored.
    r.digests = { image: "a".repeat(64), text: "b".repeat(64) };
    if (kind === "promoted") {
      r.evaluation = evaluation(spec, index, ids, true);
      r.promotedVersion = 1_000_000 + index;
    } else if (kind === "rejected") {
      r.evaluation = evaluation(spec, index, ids, false);
    } else if (kind === "evalFailed") {
      r.evaluation = {
        schemaVersion: 1,
        status: "Failed",
        round: index,
        roundUri: roundUri(spec.artifacts.s3, index),
        roundSlices: ids,
        evaluatedAt: "2026-05-01T02:00:00Z",
        reason: longReason,
        message: o.message ?? fill("evaluator: ", text, "e"),
      } as EvalResult;
    } else if (kind === "failed") {
      r.files = new Set([...files, "failed.json"]);
      const failure: FailureRecord = {
        reason: longReason,
        message: o.message ?? fill("trainer: ", text, "t"),
        generation: 1,
        failedAt: "2026-05-01T01:00:00Z",
      };
      r.failure = failure;
    }
    r.compute = { gpuSeconds: 1e15 + index / 7, startedAt: job.startTime, finishedAt: "2026-05-01T01:00:00Z" };
    observations.push(r);
  }
  const run: RawObject = {
    apiVersion: "ticclip.dev/v1alpha1",
    kind: "ContinualClipRun",
    metadata: { name, namespace: o.namespace ?? "default", uid: "00000000-0000-0000-0000-000000000000", generation: 1 },
    spec,
  } as RawObject;
  // The alias names the newest promoted version, with more metrics than any round keeps.
  const newestPromoted = observations.filter((r) => r.promotedVersion !== undefined).at(-1);
  const metrics = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [fill(`zeroShot.m${i}.`, 200, "k"), 0.5]));
  const alias: AliasPointer | undefined = newestPromoted && {
    schemaVersion: 1,
    alias: spec.promotion!.alias,
    version: newestPromoted.promotedVersion!,
    round: newestPromoted.index,
    run: { namespace: o.namespace ?? "default", name, uid: "00000000-0000-0000-0000-000000000000" },
    uri: `s3://${spec.promotion!.s3.bucket}/${fill(spec.promotion!.s3.prefix, 4000, "v")}/`,
    uris: {},
    metrics: { ...metrics, ...(newestPromoted.evaluation as { candidate?: { metrics: object } }).candidate?.metrics },
    promotedAt: fill("2026-05-01T02:00:00Z", 200, " "),
    pinned: false,
  };
  const observed: Observed = {
    discovery,
    rounds: observations,
    evaluatorImage: "operator:1",
    ...(alias ? { alias } : {}),
  };
  return { run, observed, spec };
}

/** Bytes of `status` as JSON, counted piece by piece: the uncapped status is larger than a V8 string. */
export function statusBytes(status: unknown): number {
  if (Array.isArray(status)) {
    if (status.length === 0) return 2;
    return 1 + status.reduce<number>((n, x) => n + statusBytes(x) + 1, 0);
  }
  if (status && typeof status === "object") {
    const entries = Object.entries(status).filter(([, v]) => v !== undefined);
    if (entries.length === 0) return 2;
    return 1 + entries.reduce((n, [k, v]) => n + Buffer.byteLength(JSON.stringify(k)) + 1 + statusBytes(v) + 1, 0);
  }
  return Buffer.byteLength(JSON.stringify(status));
}

/** decide()'s status for the worst case. */
export function worstStatus(o: WorstCaseOptions = {}) {
  const { run, observed } = worstCase(o);
  return decide(run, observed, WORST_NOW).status!;
}

// Every bounded field at its limit at once, numbers of 16 digits included (more than any run can
// produce): what the bounds guarantee whatever was observed. The newest round is in full detail
// however large; older ones only within detailBytes.
export function statusUpperBound() {
  const L = STATUS_LIMITS;
  const text = (n: number, ch = "x") => ch.repeat(n);
  const big = 2 ** 53 - 1;
  // A compact entry keeps promotedVersion or else reason: the larger of the two.
  const compact = Math.max(
    statusBytes(compactRound({ index: big, phase: "Evaluating", sliceCount: big, reason: text(9999) })),
    statusBytes(compactRound({ index: big, phase: "Evaluating", sliceCount: big, promotedVersion: big })),
  );
  const detailed = detailedRound({
    index: big,
    slices: Array.from({ length: 99 }, () => text(128)),
    sliceCount: big,
    firstSlice: text(128),
    replay: "CumulativeEqual",
    phase: "Evaluating",
    reason: text(9999),
    message: text(99_999),
    job: text(63),
    initCheckpoint: text(99_999),
    checkpoint: text(99_999),
    samples: big,
    gpuSeconds: -Number.MAX_VALUE,
    startedAt: text(999),
    finishedAt: text(999),
    metrics: Object.fromEntries(
      Array.from({ length: 999 }, (_, i) => [text(L.metricName - 4) + String(1000 + i), -Math.PI]),
    ),
    gates: Array.from({ length: 99 }, () => ({
      metric: text(999),
      observed: -Math.PI,
      threshold: -Math.PI,
      passed: false,
      message: text(9999),
    })),
    promotedVersion: big,
  });
  const condition = {
    type: "Progressing",
    status: "Unknown",
    observedGeneration: big,
    lastTransitionTime: "2026-01-01T00:00:00Z",
    reason: text(64),
    message: text(L.message),
  };
  const sliceList = boundSliceStatus({
    discovered: big,
    consumed: big,
    latest: text(128),
    invalid: Array.from({ length: 99 }, () => ({ id: text(1024), reason: text(9999) })),
    failed: Array.from({ length: 99 }, () => ({ id: text(128), reason: text(9999), attempts: 100 })),
    invalidCount: big,
    failedCount: big,
  });
  const rest = statusBytes({
    observedGeneration: big,
    phase: "Evaluating",
    currentRound: { index: 9999, phase: "Evaluating", job: text(63), startedAt: text(L.time) },
    promoted: {
      version: big,
      round: big,
      uri: text(L.uri),
      promotedAt: text(L.time),
      metrics: detailed.metrics,
    },
    compute: { samplesSeen: big, gpuSeconds: -Number.MAX_VALUE, oracleEquivalentSamples: big, savingVsOracle: Math.PI },
  });
  const rounds = 999 * (compact + 1) + Math.max(L.detailBytes, statusBytes(detailed)) + 2;
  const total = rounds + 4 * (statusBytes(condition) + 1) + statusBytes(sliceList) + rest + 64;
  return {
    total,
    rounds,
    compact,
    detailed: statusBytes(detailed),
    conditions: 4 * statusBytes(condition),
    slices: statusBytes(sliceList),
    rest,
  };
}
