import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { REPLAY_STRATEGIES } from "../../../operator/api/continual-clip-run.ts";
import { escapeHtml, heatColour, reportHtml } from "../../../operator/report/html.ts";
import { formatTable, meanMatrix, stat, summarize } from "../../../operator/report/summary.ts";
import { fixtureRun, SLICES } from "../../support/report-fixture.ts";

describe("summarize", () => {
  const runs = REPLAY_STRATEGIES.flatMap((s) => [fixtureRun(s, 0), fixtureRun(s, 2)]);

  test("gives each strategy its mean and spread over seeds and its compute relative to Oracle", () => {
    const rows = summarize(runs, REPLAY_STRATEGIES);
    assert.deepEqual(
      rows.map((r) => r.strategy),
      [...REPLAY_STRATEGIES],
    );
    const all = rows.find((r) => r.strategy === "CumulativeAll")!;
    assert.equal(all.seeds, 2);
    assert.ok(Math.abs(all.id!.mean - 0.51) < 1e-12);
    assert.ok(Math.abs(all.id!.max - all.id!.min - 0.02) < 1e-12);
    assert.equal(all.computeVsOracle, 0.4);
    assert.equal(rows.find((r) => r.strategy === "Oracle")!.computeVsOracle, 1);
    assert.equal(all.chance, 0.02);
  });

  test("leaves out strategies without runs and says n/a without an Oracle", () => {
    const rows = summarize([fixtureRun("Sequential", 0)], REPLAY_STRATEGIES);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.computeVsOracle, null);
    assert.match(formatTable(rows), /Sequential\s+1\s+.*n\/a/);
  });

  test("averages matrices cell by cell and ignores cells no run scored", () => {
    const a = fixtureRun("CumulativeAll", 0).matrix;
    const b = structuredClone(fixtureRun("CumulativeAll", 2).matrix);
    b.values[0]![0] = null;
    const m = meanMatrix([a, b])!;
    assert.equal(m.values[0]![0], a.values[0]![0]);
    assert.ok(Math.abs(m.values[1]![1]! - 0.51) < 1e-12);
    assert.equal(meanMatrix([]), null);
  });

  test("stat skips missing values and is null when nothing is left", () => {
    assert.deepEqual(stat([1, null, 3, undefined]), { mean: 2, min: 1, max: 3, n: 2 });
    assert.equal(stat([null]), null);
  });
});

describe("reportHtml", () => {
  test("escapes names and draws one heatmap per strategy with a cell per round and slice", () => {
    const run = { ...fixtureRun("Sequential", 0), name: "<script>alert(1)</script>" };
    const html = reportHtml({
      title: "t & <b>",
      generatedAt: "now",
      runs: [run],
      summaries: summarize([run], REPLAY_STRATEGIES),
    });
    assert.ok(!html.includes("<script>"));
    assert.ok(html.includes("&lt;script&gt;") && html.includes("t &amp; &lt;b&gt;"));
    assert.equal((html.match(/<svg class="heatmap"/g) ?? []).length, 1);
    assert.equal((html.match(/<rect class="cell"/g) ?? []).length, SLICES.length ** 2);
    assert.equal(escapeHtml(`"'`), "&quot;&#39;");
  });

  test("colours low values light and high values dark", () => {
    assert.equal(heatColour(0, 1), "rgb(255,247,188)");
    assert.equal(heatColour(1, 1), "rgb(8,48,107)");
    assert.equal(heatColour(5, 0), heatColour(0, 1));
  });
});
