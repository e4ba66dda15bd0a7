import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { impliedShares, planRound, sliceSamples, type PlanInput, type PlannerSlice, type RoundMixture } from "../../../operator/data/planner.ts";
import { REPLAY_STRATEGIES, type ReplayStrategy } from "../../../operator/api/continual-clip-run.ts";
import { roundPlan } from "../../../operator/api/round-plan.ts";

const EPS = 1e-9;

function slice(id: string, shardSamples: number[]): PlannerSlice {
  return { id, shards: shardSamples.map((n, i) => ({ uri: `s3://data/slices/${id}/shard-${String(i).padStart(5, "0")}.tar`, samples: n })) };
}

function plan(input: PlanInput): RoundMixture {
  const r = planRound(input);
  if (!r.ok) throw new Error(`${r.reason}: ${r.message}`);
  return r.mixture;
}

function shareOf(m: RoundMixture, id: string): number {
  return m.sources.find((s) => s.sliceId === id)?.expectedShare ?? 0;
}

// A random slice history: ids 1000..(1000+n) so lexicographic order is time order.
const history = fc
  .array(fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 30 })
  .map((sizes) => sizes.map((s, i) => slice(String(1000 + i), s)));

const scenario = fc
  .record({
    slices: history,
    replay: fc.constantFrom(...REPLAY_STRATEGIES),
    samplesPerRound: fc.integer({ min: 1, max: 1e9 }),
    bufferSamples: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 1e6 })),
    newCount: fc.integer({ min: 1, max: 3 }),
    endFrac: fc.double({ min: 0, max: 1, noNaN: true }),
    shuffleSeed: fc.integer(),
  })
  .map((s) => {
    // The round covers slices up to `end`; later slices exist but must be ignored.
    const end = Math.min(s.slices.length - 1, Math.floor(s.endFrac * s.slices.length));
    const start = Math.max(0, end - s.newCount + 1);
    const newSliceIds = s.slices.slice(start, end + 1).map((x) => x.id);
    // Input order must not matter: rotate the list.
    const k = Math.abs(s.shuffleSeed) % s.slices.length;
    const slices = [...s.slices.slice(k), ...s.slices.slice(0, k)];
    return {
      input: { replay: s.replay, samplesPerRound: s.samplesPerRound, bufferSamples: s.bufferSamples, round: end, slices, newSliceIds } as PlanInput,
      ordered: s.slices,
      start,
      end,
    };
  });

describe("planRound properties", () => {
  test("expected shares sum to 1 and the trainer's sampling rule yields them", () => {
    fc.assert(
      fc.property(scenario, ({ input }) => {
        const m = plan(input);
        const sum = m.sources.reduce((a, s) => a + s.expectedShare, 0);
        assert.ok(Math.abs(sum - 1) < EPS, `shares sum to ${sum}`);
        const implied = impliedShares(m.sources);
        m.sources.forEach((s, i) => assert.ok(Math.abs(implied[i]! - s.expectedShare) < 1e-6, `${s.sliceId}: implied ${implied[i]} vs ${s.expectedShare}`));
        for (const s of m.sources) assert.ok(s.weight > 0 && s.shards.length > 0);
      }),
    );
  });

  test("never uses slices that sort after the round's newest slice", () => {
    fc.assert(
      fc.property(scenario, ({ input, ordered, end }) => {
        const later = new Set(ordered.slice(end + 1).map((s) => s.id));
        for (const s of plan(input).sources) assert.ok(!later.has(s.sliceId), `${s.sliceId} is later`);
      }),
    );
  });

  test("Sequential uses only the new data, proportional to size", () => {
    fc.assert(
      fc.property(scenario, ({ input }) => {
        const m = plan({ ...input, replay: "Sequential" });
        assert.deepEqual(m.sources.map((s) => s.sliceId).sort(), [...input.newSliceIds].sort());
        const total = input.newSliceIds.reduce((a, id) => a + sliceSamples(input.slices.find((s) => s.id === id)!), 0);
        for (const s of m.sources) assert.ok(Math.abs(s.expectedShare - sliceSamples(s) / total) < EPS);
      }),
    );
  });

  for (const replay of ["CumulativeAll", "Restart", "Oracle"] as const) {
    test(`${replay} uses every slice so far, proportional to size, with weight 1`, () => {
      fc.assert(
        fc.property(scenario, ({ input, ordered, end }) => {
          const m = plan({ ...input, replay });
          const seen = ordered.slice(0, end + 1);
          const total = seen.reduce((a, s) => a + sliceSamples(s), 0);
          assert.deepEqual(m.sources.map((s) => s.sliceId), seen.map((s) => s.id));
          for (const s of m.sources) {
            assert.ok(Math.abs(s.expectedShare - sliceSamples(s) / total) < EPS);
            assert.equal(s.weight, 1);
          }
        }),
      );
    });
  }

  test("CumulativeExp halves the share of each slice one step further back, and gives the new data |D|/(|D|+B)", () => {
    fc.assert(
      fc.property(scenario, ({ input, ordered, start }) => {
        const m = plan({ ...input, replay: "CumulativeExp" });
        const past = ordered.slice(0, start);
        for (let i = 0; i + 1 < past.length; i++) {
          const older = shareOf(m, past[i]!.id);
          const newer = shareOf(m, past[i + 1]!.id);
          assert.ok(Math.abs(newer / older - 2) < 1e-9, `ratio ${newer / older}`);
        }
        checkNewShare(m, input, past.length);
      }),
    );
  });

  test("CumulativeEqual splits the buffer equally over past slices", () => {
    fc.assert(
      fc.property(scenario, ({ input, ordered, start }) => {
        const m = plan({ ...input, replay: "CumulativeEqual" });
        const past = ordered.slice(0, start);
        for (const p of past) assert.ok(Math.abs(shareOf(m, p.id) - shareOf(m, past[0]!.id)) < EPS);
        checkNewShare(m, input, past.length);
      }),
    );
  });

  test("budgets match the strategy: C per round, (t+1)C for Oracle; warm start except Restart and Oracle", () => {
    fc.assert(
      fc.property(scenario, ({ input }) => {
        const m = plan(input);
        const want = input.replay === "Oracle" ? (input.round + 1) * input.samplesPerRound : input.samplesPerRound;
        assert.equal(m.samples, want);
        assert.equal(m.computeSamples, want);
        assert.equal(m.warmStart, input.replay !== "Restart" && input.replay !== "Oracle");
      }),
    );
  });

  test("is deterministic and independent of the input order", () => {
    fc.assert(
      fc.property(scenario, ({ input }) => {
        const a = plan(input);
        const b = plan({ ...input, slices: [...input.slices].reverse(), newSliceIds: [...input.newSliceIds].reverse() });
        assert.deepEqual(a, b);
        assert.deepEqual(a, plan(structuredClone(input)));
      }),
    );
  });
});

function checkNewShare(m: RoundMixture, input: PlanInput, pastCount: number) {
  const fresh = input.newSliceIds.reduce((a, id) => a + sliceSamples(input.slices.find((s) => s.id === id)!), 0);
  const newShare = input.newSliceIds.reduce((a, id) => a + shareOf(m, id), 0);
  if (pastCount === 0) return assert.ok(Math.abs(newShare - 1) < EPS);
  const b = input.bufferSamples > 0 ? input.bufferSamples : fresh;
  assert.ok(Math.abs(newShare - fresh / (fresh + b)) < EPS, `new share ${newShare}`);
}

describe("planRound", () => {
  const three = [slice("2014", [100, 100]), slice("2015", [300]), slice("2016", [50, 50, 100, 100])];
  const base = { samplesPerRound: 1000, bufferSamples: 0, round: 2, slices: three, newSliceIds: ["2016"] };
  const cases: { name: string; replay: ReplayStrategy; bufferSamples?: number; want: Record<string, number>; samples: number }[] = [
    { name: "Sequential trains on the new slice only", replay: "Sequential", want: { "2016": 1 }, samples: 1000 },
    { name: "CumulativeAll mixes every slice by size", replay: "CumulativeAll", want: { "2014": 0.25, "2015": 0.375, "2016": 0.375 }, samples: 1000 },
    { name: "CumulativeExp weights slice t-k by 2^-k inside a buffer the size of the new data", replay: "CumulativeExp", want: { "2014": 1 / 6, "2015": 1 / 3, "2016": 0.5 }, samples: 1000 },
    { name: "CumulativeEqual splits a 900-sample buffer equally", replay: "CumulativeEqual", bufferSamples: 900, want: { "2014": 0.375, "2015": 0.375, "2016": 0.25 }, samples: 1000 },
    { name: "Oracle sees (t+1)C samples", replay: "Oracle", want: { "2014": 0.25, "2015": 0.375, "2016": 0.375 }, samples: 3000 },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const m = plan({ ...base, replay: c.replay, bufferSamples: c.bufferSamples ?? 0 });
      const got = Object.fromEntries(m.sources.map((s) => [s.sliceId, s.expectedShare]));
      assert.deepEqual(Object.keys(got), Object.keys(c.want));
      for (const [id, share] of Object.entries(c.want)) assert.ok(Math.abs(got[id]! - share) < 1e-9, `${id}: ${got[id]} != ${share}`);
      assert.equal(m.samples, c.samples);
    });
  }

  test("weights follow the trainer's rule: weight x samples is proportional to the share", () => {
    const m = plan({ ...base, replay: "CumulativeExp" });
    // shares 1/6, 1/3, 1/2 over 200, 300, 300 samples of 800 in all.
    assert.deepEqual(m.sources.map((s) => s.weight), [Number(((1 / 6) * 800 / 200).toPrecision(12)), Number(((1 / 3) * 800 / 300).toPrecision(12)), Number((0.5 * 800 / 300).toPrecision(12))]);
    assert.deepEqual(m.sources[0]!.shards, three[0]!.shards);
  });

  test("its output is a valid RoundPlan data section", () => {
    for (const replay of REPLAY_STRATEGIES) {
      const m = plan({ ...base, replay });
      const data = roundPlan.shape.data.parse({ sources: m.sources, samples: m.samples });
      assert.deepEqual(data.sources, m.sources);
    }
  });

  test("ignores slices discovered after the round's slice", () => {
    const m = plan({ ...base, replay: "CumulativeAll", round: 1, newSliceIds: ["2015"] });
    assert.deepEqual(m.sources.map((s) => s.sliceId), ["2014", "2015"]);
  });

  test("rejects a new slice that is not among the valid slices", () => {
    const r = planRound({ ...base, replay: "CumulativeAll", newSliceIds: ["2099"] });
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.reason, "UnknownSlice");
  });

  test("rejects a round without new slices", () => {
    const r = planRound({ ...base, replay: "Sequential", newSliceIds: [] });
    assert.equal(!r.ok && r.reason, "NoNewSlices");
  });
});
