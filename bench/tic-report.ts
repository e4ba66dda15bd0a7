// Folds the results.json of several `npm run experiment:tic` runs with the same settings (say, seeds
// run as separate processes, or a run stopped after some seeds and another for the rest) into one
// table with intervals and one report:
//   node bench/tic-report.ts .local/a/results.json .local/b/results.json [--out .local/combined]
// Runs of the same variant and seed in two files are an error (they would count twice).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { reportHtml } from "../operator/report/html.ts";
import { differenceLines, formatTable, summarize, type RunResult } from "../operator/report/summary.ts";

type ResultsFile = {
  T: number;
  C: number;
  batch: number;
  lr: number;
  evalSamples: number;
  seedsDone: string[];
  calibration: { budget: number; meanR1: number; id: number }[];
  summaries: { label: string }[];
  runs: (RunResult & { name: string })[];
  wallTime: string;
};

const args = process.argv.slice(2);
const outAt = args.indexOf("--out");
const out = outAt >= 0 ? args[outAt + 1]! : ".local/tic-combined";
const files = args.filter((a, i) => a !== "--out" && i !== outAt + 1);
if (files.length === 0) throw new Error("usage: node bench/tic-report.ts <results.json>... [--out <dir>]");
const read = files.map((f) => ({ f, j: JSON.parse(readFileSync(f, "utf8")) as ResultsFile }));
const first = read[0]!.j;
for (const { f, j } of read) {
  const same = j.T === first.T && j.C === first.C && j.batch === first.batch && j.lr === first.lr;
  if (!same || j.evalSamples !== first.evalSamples) throw new Error(`${f}: other settings than ${read[0]!.f}`);
}
const runs = read.flatMap(({ j }) => j.runs);
const seen = new Set<string>();
for (const r of runs) {
  const key = `${r.variant ?? r.strategy} seed ${r.seed}`;
  if (seen.has(key)) throw new Error(`${key} is in two files`);
  seen.add(key);
}
const order = [...new Set(read.flatMap(({ j }) => j.summaries.map((s) => s.label)))];
const summaries = summarize(runs, order);
const pts = (x: number) => (100 * x).toFixed(1);
const calibration = read.flatMap(({ j }) => j.calibration);
const lines = [
  `T = ${first.T}, C = ${first.C}, batch ${first.batch}, lr ${first.lr}; from ${files.join(", ")} (wall times ${read.map(({ j }) => j.wallTime).join(", ")})`,
  ...calibration.map(
    (c) => `Calibration: ${c.budget / first.C}C from scratch: mean R@1 ${pts(c.meanR1)}, ID ${pts(c.id)}`,
  ),
];
const differences = differenceLines(runs, order);
console.log(
  `${lines.join("\n")}\n\nR@1 in points: mean [95% bootstrap interval over seeds and pack items]\n${formatTable(summaries)}` +
    `\n\n${differences.join("\n")}`,
);
lines.push(...differences.flatMap((l) => l.split("\n")));
mkdirSync(out, { recursive: true });
writeFileSync(
  path.join(out, "report.html"),
  reportHtml({
    title: `TiC-CLIP on our stack: ${first.T} slices, C = ${first.C} (combined)`,
    generatedAt: new Date().toISOString(),
    runs: runs.map((r) => ({ ...r, rounds: [] })),
    summaries,
    notes: lines,
  }),
);
writeFileSync(path.join(out, "summaries.json"), JSON.stringify({ files, summaries }, null, 2));
console.log(`\nreport: ${path.join(out, "report.html")}`);
