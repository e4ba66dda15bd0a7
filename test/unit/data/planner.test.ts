import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  bufferTargets,
  impliedShares,
  planRound,
  sliceSamples,
  type PlanInput,
  type PlannerSlice,
  type RoundMixture,
} from "../../../operator/data/planner.ts";
import { REPLAY_STRATEGIES, type ReplayStrategy } from "../../../operator/api/continual-clip-run.ts";
import { roundPlan } from "../../../operator/api/round-plan.ts";

const EPS = 1e-9;

function slice(id: string, shardSamples: number[]): PlannerSlice {
  return {
    id,
    shards: shardSamples.map((n, i) => ({
      uri: `s3://data/slices/${id}/shard-${String(i).padStart(5, "0")}.tar`,
      samples: n,
    })),
  };
}

function plan(input: PlanInput): RoundMixture {
  const r = planRound(input);
  if (!r.ok) throw new Error(`${r.reason}: ${r.message}`);
  return r.mixture;
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
      input: {
        replay: s.replay,
        samplesPerRound: s.samplesPerRound,
        bufferSamples: s.bufferSamples,
        round: end,
        slices,
        newSliceIds,
      } as PlanInput,
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
        for (const [i, s] of m.sources.entries()) {
          assert.ok(
            Math.abs(implied[i]! - s.expectedShare) < 1e-6,
            `${s.sliceId}: implied ${implied[i]} vs ${s.expectedShare}`,
          );
        }
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
          assert.deepEqual(
            m.sources.map((s) => s.sliceId),
            seen.map((s) => s.id),
          );
          for (const s of m.sources) {
            assert.ok(Math.abs(s.expectedShare - sliceSamples(s) / total) < EPS);
            assert.equal(s.weight, 1);
          }
        }),
      );
    });
  }

  for (const replay of ["CumulativeExp", "CumulativeEqual"] as const) {
    test(`${replay} replays each past slice's allotment from its shortest shard prefix, uniformly`, () => {
      fc.assert(
        fc.property(scenario, ({ input, ordered, start, end }) => {
          const m = plan({ ...input, replay });
          const seen = ordered.slice(0, end + 1);
          const targets = bufferTargets(replay, seen.map(sliceSamples), input.bufferSamples);
          const pool = seen.reduce((a, s, j) => a + (j >= start ? sliceSamples(s) : targets[j]!), 0);
          for (const [j, s] of seen.entries()) {
            const src = m.sources.find((x) => x.sliceId === s.id);
            const want = j >= start ? sliceSamples(s) : targets[j]!;
            if (want === 0) {
              assert.equal(src, undefined);
              continue;
            }
            assert.ok(src, `${s.id} missing`);
            assert.ok(
              Math.abs(src.expectedShare - want / pool) < EPS,
              `${s.id}: ${src.expectedShare} vs ${want / pool}`,
            );
            // A prefix of the slice's shards, the shortest one that holds the allotment.
            assert.deepEqual(src.shards, s.shards.slice(0, src.shards.length));
            assert.ok(sliceSamples(src) >= want);
            assert.ok(sliceSamples({ shards: src.shards.slice(0, -1) }) < want);
          }
          assert.equal(
            m.storedSamples,
            m.sources.reduce((a, x) => a + sliceSamples(x), 0),
          );
        }),
      );
    });

    test(`${replay} buffers only shrink: a past slice's retained prefix is nested in the round before's`, () => {
      fc.assert(
        fc.property(scenario, ({ input, ordered, end }) => {
          fc.pre(end + 1 < ordered.length);
          const now = plan({ ...input, replay, round: end, newSliceIds: [ordered[end]!.id] });
          const next = plan({ ...input, replay, round: end + 1, newSliceIds: [ordered[end + 1]!.id] });
          for (const src of next.sources) {
            if (src.sliceId === ordered[end + 1]!.id) continue;
            const before = now.sources.find((x) => x.sliceId === src.sliceId);
            assert.ok(before, `${src.sliceId} was dropped and came back`);
            assert.deepEqual(src.shards, before.shards.slice(0, src.shards.length));
          }
        }),
      );
    });
  }

  test("a buffer never holds more than its size B, nor a slice more than it has, and allotments never grow", () => {
    fc.assert(
      fc.property(
        fc.constantFrom("CumulativeExp", "CumulativeEqual" as const),
        fc.array(fc.integer({ min: 1, max: 100_000 }), { minLength: 1, maxLength: 12 }),
        fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 100_000 })),
        (replay, sizes, b) => {
          const kept = bufferTargets(replay, sizes, b);
          const n = sizes.length - 1;
          assert.equal(kept[n], sizes[n]);
          const buffer = kept.slice(0, n).reduce((a, x) => a + x, 0);
          assert.ok(buffer <= (b > 0 ? b : sizes[n]!), `buffer ${buffer}`);
          for (const [j, x] of kept.entries()) assert.ok(x >= 0 && x <= sizes[j]! && Number.isInteger(x));
          if (n >= 1) {
            const earlier = bufferTargets(replay, sizes.slice(0, n), b);
            for (let j = 0; j < n - 1; j++) assert.ok(kept[j]! <= earlier[j]!, `slice ${j} grew`);
          }
        },
      ),
    );
  });

  test("on equal slices of size D, CumulativeExp keeps D/2^k of the slice k steps back, the two oldest alike", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 2, max: 12 }), (d, steps) => {
        const kept = bufferTargets("CumulativeExp", Array(steps).fill(d), 0);
        const m = steps - 1;
        for (let j = 0; j < m; j++) assert.equal(kept[j], Math.floor(d / 2 ** Math.min(m - j, m - 1)));
      }),
    );
  });

  test("on equal slices of size D, CumulativeEqual keeps D/m of each of the m past slices", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1_000_000 }), fc.integer({ min: 2, max: 12 }), (d, steps) => {
        const kept = bufferTargets("CumulativeEqual", Array(steps).fill(d), 0);
        for (let j = 0; j < steps - 1; j++) assert.equal(kept[j], Math.floor(d / (steps - 1)));
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
        const b = plan({
          ...input,
          slices: [...input.slices].reverse(),
          newSliceIds: [...input.newSliceIds].reverse(),
        });
        assert.deepEqual(a, b);
        assert.deepEqual(a, plan(structuredClone(input)));
      }),
    );
  });
});

describe("planRound", () => {
  const three = [slice("2014", [100, 100]), slice("2015", [300]), slice("2016", [50, 50, 100, 100])];
  const base = { samplesPerRound: 1000, bufferSamples: 0, round: 2, slices: three, newSliceIds: ["2016"] };
  const cases: {
    name: string;
    replay: ReplayStrategy;
    bufferSamples?: number;
    want: Record<string, number>;
    samples: number;
  }[] = [
    { name: "Sequential trains on the new slice only", replay: "Sequential", want: { "2016": 1 }, samples: 1000 },
    {
      name: "CumulativeAll mixes every slice by size",
      replay: "CumulativeAll",
      want: { "2014": 0.25, "2015": 0.375, "2016": 0.375 },
      samples: 1000,
    },
    // Buffer D = 300 (the new slice): D/2 and D/2 of the two past slices at the third step.
    {
      name: "CumulativeExp replays D/2, D/2 of the two past slices at the third step",
      replay: "CumulativeExp",
      want: { "2014": 0.25, "2015": 0.25, "2016": 0.5 },
      samples: 1000,
    },
    // 450 each is allotted, but 2014 holds only 200 and 2015 only 300.
    {
      name: "CumulativeEqual splits a 900-sample buffer equally, capped by what each slice has",
      replay: "CumulativeEqual",
      bufferSamples: 900,
      want: { "2014": 0.25, "2015": 0.375, "2016": 0.375 },
      samples: 1000,
    },
    {
      name: "Oracle sees (t+1)C samples",
      replay: "Oracle",
      want: { "2014": 0.25, "2015": 0.375, "2016": 0.375 },
      samples: 3000,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const m = plan({ ...base, replay: c.replay, bufferSamples: c.bufferSamples ?? 0 });
      const got = Object.fromEntries(m.sources.map((s) => [s.sliceId, s.expectedShare]));
      assert.deepEqual(Object.keys(got), Object.keys(c.want));
      for (const [id, share] of Object.entries(c.want))
        assert.ok(Math.abs(got[id]! - share) < 1e-9, `${id}: ${got[id]} != ${share}`);
      assert.equal(m.samples, c.samples);
    });
  }

  test("weights follow the trainer's rule: weight x samples is proportional to the share", () => {
    const m = plan({ ...base, replay: "CumulativeExp" });
    // shares 1/4, 1/4, 1/2 over 200, 300, 300 listed samples of 800 in all.
    const w = (share: number, n: number) => Number(((share * 800) / n).toPrecision(12));
    assert.deepEqual(
      m.sources.map((s) => s.weight),
      [w(0.25, 200), w(0.25, 300), w(0.5, 300)],
    );
    assert.deepEqual(m.sources[0]!.shards, three[0]!.shards);
  });

  test("its output is a valid RoundPlan data section", () => {
    for (const replay of REPLAY_STRATEGIES) {
      const m = plan({ ...base, replay });
      const data = roundPlan.shape.data.parse({ sources: m.sources, samples: m.samples });
      assert.deepEqual(data.sources, m.sources);
    }
  });

  // Four slices of D = 800 in shards of 100, as in the paper's 4th step: D/2, D/4, D/4 of old data.
  const equal = ["2014", "2015", "2016", "2017"].map((id) => slice(id, Array(8).fill(100)));
  const storage: { replay: ReplayStrategy; stored: number; buffer: Record<string, number> }[] = [
    { replay: "Sequential", stored: 800, buffer: {} },
    { replay: "CumulativeAll", stored: 3200, buffer: { "2014": 800, "2015": 800, "2016": 800 } },
    { replay: "CumulativeExp", stored: 1600, buffer: { "2014": 200, "2015": 200, "2016": 400 } },
    // D/3 = 266 samples each, kept as whole shards: 300.
    { replay: "CumulativeEqual", stored: 1700, buffer: { "2014": 300, "2015": 300, "2016": 300 } },
    { replay: "Oracle", stored: 3200, buffer: { "2014": 800, "2015": 800, "2016": 800 } },
  ];
  for (const c of storage) {
    test(`${c.replay} at the 4th step of equal slices keeps ${c.stored} samples`, () => {
      const m = plan({ ...base, slices: equal, round: 3, newSliceIds: ["2017"], replay: c.replay });
      assert.equal(m.storedSamples, c.stored);
      const listed = Object.fromEntries(
        m.sources.filter((s) => s.sliceId !== "2017").map((s) => [s.sliceId, sliceSamples(s)]),
      );
      assert.deepEqual(listed, c.buffer);
    });
  }

  test("ignores slices discovered after the round's slice", () => {
    const m = plan({ ...base, replay: "CumulativeAll", round: 1, newSliceIds: ["2015"] });
    assert.deepEqual(
      m.sources.map((s) => s.sliceId),
      ["2014", "2015"],
    );
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
