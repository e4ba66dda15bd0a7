import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { accumulateCompute, computeAccounting, type FinishedRound } from "../../../operator/data/compute.ts";
import { planRound, type PlannerSlice } from "../../../operator/data/planner.ts";
import type { ReplayStrategy } from "../../../operator/api/continual-clip-run.ts";

const C = 184_000_000;

/** Plans T rounds of one slice each with the real planner and records what each cost. */
function runRounds(replay: ReplayStrategy, T: number): FinishedRound[] {
  const slices: PlannerSlice[] = [];
  const rounds: FinishedRound[] = [];
  for (let t = 0; t < T; t++) {
    const id = String(2014 + t);
    slices.push({ id, shards: [{ uri: `s3://d/${id}/shard-00000.tar`, samples: 1000 }] });
    const r = planRound({ replay, samplesPerRound: C, bufferSamples: 0, round: t, slices, newSliceIds: [id] });
    if (!r.ok) throw new Error(r.message);
    rounds.push({ index: t, replay, samples: r.mixture.computeSamples, gpuSeconds: 10 });
  }
  return rounds;
}

describe("computeAccounting", () => {
  const cases = [
    { T: 4, replay: "CumulativeAll", saving: 2.5, seen: 4 * C, oracle: 10 * C },
    { T: 7, replay: "CumulativeAll", saving: 4, seen: 7 * C, oracle: 28 * C },
    { T: 4, replay: "Sequential", saving: 2.5, seen: 4 * C, oracle: 10 * C },
    { T: 7, replay: "Oracle", saving: 1, seen: 28 * C, oracle: 28 * C },
    { T: 1, replay: "CumulativeExp", saving: 1, seen: C, oracle: C },
  ] as const;
  for (const c of cases) {
    test(`${c.replay} over ${c.T} rounds saves ${c.saving}x against an Oracle ((T+1)/2 for warm-started replay)`, () => {
      const got = computeAccounting(runRounds(c.replay, c.T));
      assert.deepEqual(got, {
        samplesSeen: c.seen,
        gpuSeconds: 10 * c.T,
        oracleEquivalentSamples: c.oracle,
        savingVsOracle: c.saving,
      });
    });
  }

  test("reports zeros before any round finished", () => {
    assert.deepEqual(computeAccounting([]), {
      samplesSeen: 0,
      gpuSeconds: 0,
      oracleEquivalentSamples: 0,
      savingVsOracle: 0,
    });
  });

  test("accumulates incrementally to the same totals", () => {
    const rounds = runRounds("CumulativeEqual", 5);
    let acc: ReturnType<typeof accumulateCompute> | undefined;
    for (const r of rounds) acc = accumulateCompute(acc, r);
    assert.deepEqual(acc, computeAccounting(rounds));
  });

  test("uses each round's own budget when samplesPerRound changed", () => {
    const got = computeAccounting([
      { index: 0, replay: "CumulativeAll", samples: 100 },
      { index: 1, replay: "CumulativeAll", samples: 200 },
    ]);
    assert.equal(got.oracleEquivalentSamples, 100 + 2 * 200);
    assert.equal(got.savingVsOracle, Number((500 / 300).toPrecision(6)));
  });
});
