// The experiment's 95% intervals (summary.ts bootstrapCi): over seeds and pack items, seeded.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ticMatrix } from "../../../operator/evaluation/tic.ts";
import {
  bootstrapCi,
  formatDifferences,
  formatStat,
  measureCells,
  measureOf,
  pairedBootstrapCi,
  pairedDifferences,
  relationCells,
  seededRandom,
  summarize,
  type RunResult,
} from "../../../operator/report/summary.ts";
import { fixtureRun, SLICES } from "../../support/report-fixture.ts";

test("the same input and seed give the same interval; the interval holds the mean", () => {
  const runs = [[{ value: 0.4, items: 200 }], [{ value: 0.5, items: 200 }], [{ value: 0.45, items: 200 }]];
  const a = bootstrapCi(runs, { seed: 7 });
  assert.deepEqual(bootstrapCi(runs, { seed: 7 }), a);
  assert.ok(a[0] < 0.45 && 0.45 < a[1], JSON.stringify(a));
});

test("identical seeds with many items: a narrow interval; few items: a wide one", () => {
  const narrow = bootstrapCi([[{ value: 0.5, items: 100_000 }], [{ value: 0.5, items: 100_000 }]]);
  assert.ok(narrow[1] - narrow[0] < 0.01, JSON.stringify(narrow));
  const wide = bootstrapCi([[{ value: 0.5, items: 20 }], [{ value: 0.5, items: 20 }]]);
  assert.ok(wide[1] - wide[0] > 0.1, JSON.stringify(wide));
});

test("seeds that disagree widen the interval even with exact cells", () => {
  const [lo, hi] = bootstrapCi([[{ value: 0.2, items: 1e6 }], [{ value: 0.8, items: 1e6 }]], { resamples: 4000 });
  assert.ok(lo < 0.25 && hi > 0.75, `${lo} ${hi}`);
});

test("a cell of 0 or 1 stays put (no item noise at the bounds)", () => {
  assert.deepEqual(bootstrapCi([[{ value: 1, items: 50 }]]), [1, 1]);
  assert.deepEqual(bootstrapCi([[{ value: 0, items: 50 }]]), [0, 0]);
});

test("refuses a run without cells", () => {
  assert.throws(() => bootstrapCi([]));
  assert.throws(() => bootstrapCi([[]]));
});

test("seededRandom is uniform enough on [0, 1)", () => {
  const r = seededRandom(3);
  const xs = Array.from({ length: 10_000 }, r);
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.02, String(mean));
});

test("relationCells picks the diagonal for ID and the lower triangle for backward, with item counts", () => {
  const run = fixtureRun("CumulativeAll", 0);
  const items = run.matrix.values.map((row) => row.map((v) => (v === null ? null : 200)));
  const id = relationCells({ matrix: run.matrix, items }, "id")!;
  assert.equal(id.length, 4);
  assert.ok(id.every((c) => c.items === 200 && Math.abs(c.value - 0.5) < 1e-12));
  assert.equal(relationCells({ matrix: run.matrix, items }, "backward")!.length, 6);
  assert.equal(relationCells({ matrix: run.matrix }, "id"), null);
});

test("summarize gives rows with item counts an interval, variants their own rows, and prints it", () => {
  const withItems = (seed: number, variant?: string) => {
    const r = fixtureRun("CumulativeAll", seed);
    return { ...r, variant, items: r.matrix.values.map((row) => row.map(() => 100)) };
  };
  const rows = summarize(
    [withItems(0), withItems(1), withItems(0, "CumulativeAll + EMA 0.5"), withItems(1, "CumulativeAll + EMA 0.5")],
    ["CumulativeAll", "CumulativeAll + EMA 0.5"],
  );
  assert.deepEqual(
    rows.map((r) => [r.label, r.strategy, r.seeds]),
    [
      ["CumulativeAll", "CumulativeAll", 2],
      ["CumulativeAll + EMA 0.5", "CumulativeAll", 2],
    ],
  );
  const ci = rows[0]!.id!.ci!;
  assert.ok(ci[0] <= rows[0]!.id!.mean && rows[0]!.id!.mean <= ci[1]);
  assert.match(formatStat(rows[0]!.id), /^\d+\.\d \[\d+\.\d, \d+\.\d\]$/);
  assert.equal(ticMatrix([]).summary.id, null);
});

/** A run whose every cell is base + seedShift (+ shift), 2000 items a cell. */
function shifted(label: string, seed: number, shift: number): RunResult {
  const rows = SLICES.map((s, i) => ({
    round: i,
    roundSlices: [s],
    cells: Object.fromEntries(SLICES.map((t, j) => [t, 0.3 + 0.1 * seed - 0.05 * Math.abs(i - j) + shift])),
  }));
  const matrix = ticMatrix(rows);
  return {
    strategy: "CumulativeAll",
    variant: label,
    seed: String(seed),
    run: `${label}-${seed}`,
    matrix,
    items: matrix.values.map((row) => row.map(() => 2000)),
    samplesSeen: 4000,
    savingVsOracle: 2.5,
  };
}

test("a paired difference is clear where seed swings hide it in the rows' own intervals", () => {
  const results = [0, 1, 2].flatMap((seed) => [shifted("base", seed, 0), shifted("better", seed, 0.05)]);
  const [base, better] = summarize(results, ["base", "better"]);
  assert.ok(better!.id!.ci![0] < base!.id!.ci![1], "the rows' own intervals overlap");
  const [d] = pairedDifferences(results, ["base", "better"], "base");
  assert.equal(d!.seeds, 3);
  assert.ok(Math.abs(d!.id!.mean - 0.05) < 1e-9);
  assert.ok(d!.id!.ci![0] > 0.03 && d!.id!.ci![1] < 0.07, JSON.stringify(d!.id!.ci));
  assert.ok(d!.backward!.ci![0] > 0.03, JSON.stringify(d!.backward!.ci));
  assert.ok(Math.abs(d!.final!.mean - 0.05) < 1e-9 && d!.final!.ci![0] > 0.02, JSON.stringify(d!.final));
  assert.match(
    formatDifferences([d!]),
    /^better {2}ID \+5\.0 \[\+\d\.\d, \+\d\.\d\] {2}backward \+5\.0 .*\(3 seeds, paired\)$/,
  );
});

test("pairedDifferences pairs by seed only: a seed the baseline lacks is left out", () => {
  const results = [shifted("base", 0, 0), shifted("other", 0, -0.1), shifted("other", 1, 0.3)];
  const [d] = pairedDifferences(results, ["base", "other"], "base");
  assert.equal(d!.seeds, 1);
  assert.ok(Math.abs(d!.id!.mean + 0.1) < 1e-9);
  assert.deepEqual(pairedDifferences(results, ["base", "none"], "base"), []);
});

test("pairedBootstrapCi: identical sides give 0 at the bounds; a missing side is refused", () => {
  const one = [{ value: 1, items: 50 }];
  assert.deepEqual(pairedBootstrapCi([[one, one]]), [0, 0]);
  assert.throws(() => pairedBootstrapCi([[one, []]]));
  assert.throws(() => pairedBootstrapCi([]));
});

test("final: the last round's row over every slice, with its item counts", () => {
  const run = shifted("x", 1, 0);
  const last = run.matrix.values.at(-1)!;
  const sum = last.reduce((a: number, b) => a + (b ?? Number.NaN), 0);
  assert.ok(Math.abs(measureOf(run, "final")! - sum / last.length) < 1e-12);
  assert.deepEqual(
    measureCells(run, "final")!.map((c) => c.items),
    [2000, 2000, 2000, 2000],
  );
  assert.equal(measureCells({ matrix: run.matrix }, "final"), null);
  const [row] = summarize([run], ["x"]);
  assert.ok(Math.abs(row!.final!.mean - measureOf(run, "final")!) < 1e-12);
});
