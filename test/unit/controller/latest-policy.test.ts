// roundPolicy Latest with one bad slice among good ones (issue 21, "check these"): a round over
// several slices that fails cannot say which slice failed it. The good slices must not spend their
// attempts with the bad one and be given up, even at maxAttemptsPerSlice 1 (one failed batch would
// have given up every slice in it); the bad one is given up after its own failures.
// A world where every round containing the bad slice fails, run through decideRounds round by
// round, a new slice arriving after each failure (a failed round is retried once something is new).
import { test } from "node:test";
import assert from "node:assert/strict";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { decideRounds, type RoundObservation } from "../../../operator/controller/rounds.ts";
import type { RoundAction } from "../../../operator/controller/types.ts";
import type { Slice } from "../../../operator/data/validate.ts";

const RUN = { name: "demo", namespace: "ns", uid: "uid-1", generation: 1 };
const spec = continualClipRunSpec.parse({
  source: { s3: { bucket: "data", prefix: "slices/" } },
  model: { architecture: "ticclip-tiny" },
  strategy: { samplesPerRound: 100, roundPolicy: "Latest", maxAttemptsPerSlice: 1 },
  trainer: { image: "trainer:1", gpusPerNode: 0 },
  artifacts: { s3: { bucket: "runs", prefix: "demo/" } },
});
const slice = (id: string): Slice => ({
  id,
  uri: `s3://data/slices/${id}/`,
  createdAt: "2026-01-01T00:00:00Z",
  numSamples: 100,
  shards: [{ key: "shard-0.tar", uri: `s3://data/slices/${id}/shard-0.tar`, samples: 100, bytes: 10 }],
  fingerprint: id,
});

const BAD = "2017";

test("Latest: a bad slice batched with good ones is given up alone; every good slice trains", () => {
  let ids = ["2016", "2017", "2018"];
  const rounds: RoundObservation[] = [];
  let next = 2019;
  const trainedOn: string[][] = [];
  let failedSlices: { id: string; attempts: number }[] = [];
  for (let pass = 0; pass < 40; pass++) {
    const d = decideRounds({
      run: RUN,
      spec,
      slices: ids.map(slice),
      rounds,
      previous: undefined,
      now: new Date("2026-05-01T00:00:00Z"),
    });
    failedSlices = d.failedSlices;
    const write = d.actions.find((a): a is Extract<RoundAction, { kind: "WritePlan" }> => a.kind === "WritePlan");
    for (const a of d.actions)
      if (a.kind === "RecordFailure") {
        const r = rounds.find((x) => x.index === a.round)!;
        r.failure = a.record;
        (r.files as Set<string>).add("failed.json");
      }
    if (!write) {
      // Nothing to train: a failed round waits for something new. Stop once every slice is settled.
      if (d.waiting?.reason !== "RoundFailed") break;
      ids = [...ids, String(next++)];
      continue;
    }
    const { round, plan } = write;
    const fails = plan.newSlices.includes(BAD);
    trainedOn.push(plan.newSlices);
    rounds.push({
      index: round,
      files: new Set(fails ? ["plan.json"] : ["plan.json", "_SUCCESS", "checkpoint.pt", "eval.json"]),
      plan: { ...plan, data: { samples: plan.data.samples } },
      job: fails
        ? {
            name: `r${round}`,
            active: 0,
            succeeded: 0,
            failed: 1,
            complete: false,
            failure: { reason: "BackoffLimitExceeded", message: "exit 1" },
          }
        : { name: `r${round}`, active: 0, succeeded: 1, failed: 0, complete: true },
      ...(fails
        ? {}
        : {
            evaluation: { judged: true as const, evaluatedAt: "t" },
            verdict: {
              evaluatedAt: "t",
              judgedAt: "t",
              gates: [],
              verdict: { passed: true as const, metrics: {}, gates: [], message: "ok" },
            },
          }),
    });
  }
  assert.deepEqual(
    failedSlices.map((f) => [f.id, f.attempts]),
    [[BAD, 1]],
    `only the bad slice is given up; rounds: ${JSON.stringify(trainedOn)}`,
  );
  // Split after the batch failed, oldest first; the bad slice fails alone and is given up; the good
  // ones train, in order.
  assert.deepEqual(trainedOn, [["2016", "2017", "2018"], ["2016"], ["2017"], ["2018"], ["2019"]]);
  const trained = new Set(rounds.filter((r) => r.files.has("_SUCCESS")).flatMap((r) => r.plan!.newSlices));
  for (const id of ids.filter((i) => i !== BAD))
    assert.ok(trained.has(id), `${id} trained; rounds: ${JSON.stringify(trainedOn)}`);
});
