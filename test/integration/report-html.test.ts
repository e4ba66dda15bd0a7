// The TiC report as a person sees it: opened in headless Chromium (Debian's package, driven over
// CDP), it loads without console errors and its heatmaps and plot are drawn with real size.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { REPLAY_STRATEGIES } from "../../operator/api/continual-clip-run.ts";
import { reportHtml } from "../../operator/report/html.ts";
import { summarize } from "../../operator/report/summary.ts";
import { openPage } from "../support/chromium.ts";
import { fixtureRun, SLICES } from "../support/report-fixture.ts";

type Box = { w: number; h: number };

describe("TiC report in headless Chromium", () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), "tic-report-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("loads with no console errors and draws every heatmap cell, the plot points and the timelines", async () => {
    const runs = REPLAY_STRATEGIES.flatMap((s) => [fixtureRun(s, 0), fixtureRun(s, 1)]);
    const file = path.join(dir, "report.html");
    writeFileSync(
      file,
      reportHtml({
        title: "TiC",
        generatedAt: "2026-01-01T00:00:00Z",
        runs,
        summaries: summarize(runs, REPLAY_STRATEGIES),
      }),
    );
    const page = await openPage(pathToFileURL(file).href);
    try {
      assert.deepEqual(page.problems, { consoleErrors: [], exceptions: [] });
      const heatmaps = await page.evaluate<Box[]>(`[...document.querySelectorAll("svg.heatmap")].map((s) => {
        const r = s.getBoundingClientRect(); return { w: r.width, h: r.height }; })`);
      assert.equal(heatmaps.length, REPLAY_STRATEGIES.length);
      for (const b of heatmaps) assert.ok(b.w > 100 && b.h > 100, JSON.stringify(b));
      const cells = await page.evaluate<Box[]>(`[...document.querySelectorAll("svg.heatmap rect.cell")].map((c) => {
        const r = c.getBoundingClientRect(); return { w: r.width, h: r.height }; })`);
      assert.equal(cells.length, REPLAY_STRATEGIES.length * SLICES.length ** 2);
      for (const b of cells) assert.ok(b.w > 10 && b.h > 10);
      const fills = await page.evaluate<string[]>(`[...new Set([...document.querySelectorAll("svg.heatmap rect.cell")]
        .map((c) => getComputedStyle(c).fill))]`);
      assert.ok(fills.length > 1, "cells of different values have different colours");
      const points = await page.evaluate<
        { metric: string; w: number }[]
      >(`[...document.querySelectorAll("svg.plot .point")]
        .map((p) => ({ metric: p.dataset.metric, w: p.getBoundingClientRect().width }))`);
      assert.equal(points.filter((p) => p.metric === "backward").length, REPLAY_STRATEGIES.length);
      assert.equal(points.filter((p) => p.metric === "id").length, REPLAY_STRATEGIES.length);
      for (const p of points) assert.ok(p.w > 4);
      const rounds = await page.evaluate<number>(`document.querySelectorAll(".timeline rect.round").length`);
      assert.equal(rounds, runs.length * SLICES.length);
    } finally {
      await page.close();
    }
  });

  test("reports console errors and exceptions of a broken page", async () => {
    const file = path.join(dir, "broken.html");
    writeFileSync(file, `<!doctype html><script>console.error("boom"); undefinedFunction();</script>`);
    const page = await openPage(pathToFileURL(file).href);
    try {
      assert.deepEqual(page.problems.consoleErrors, ["boom"]);
      assert.equal(page.problems.exceptions.length, 1);
      assert.match(page.problems.exceptions[0]!, /undefinedFunction/);
    } finally {
      await page.close();
    }
  });
});
