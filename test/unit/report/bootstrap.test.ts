// The experiment's 95% intervals (summary.ts bootstrapCi): over seeds and pack items, seeded.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ticMatrix } from "../../../operator/evaluation/tic.ts";
import { bootstrapCi, formatStat, relationCells, seededRandom, summarize } from "../../../operator/report/summary.ts";
import { fixtureRun } from "../../support/report-fixture.ts";

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
