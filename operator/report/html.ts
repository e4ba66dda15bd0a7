// The TiC report: one self-contained HTML file (inline CSS and SVG, no script, nothing fetched)
// built from runs' status and their TiC matrices. Pure: data in, a string out.
import type { ReplayStrategy, RoundStatus } from "../api/continual-clip-run.ts";
import { REPLAY } from "../api/replay-strategies.ts";
import { describeSlices } from "../controller/status-bounds.ts";
import type { TicMatrix } from "../evaluation/tic.ts";
import type { RoundCurve } from "./curves.ts";
import { labelOf, meanMatrix, TABLE_HEADER, tableCells, type StrategySummary } from "./summary.ts";

export type ReportRun = {
  name: string;
  strategy: ReplayStrategy;
  /** A variant of the strategy (weight-space merging) gets its own heatmap and row. */
  variant?: string | undefined;
  seed: string;
  matrix: TicMatrix;
  rounds: readonly RoundStatus[];
  compute?: { samplesSeen: number; oracleEquivalentSamples: number; savingVsOracle: number } | undefined;
  /** Each round's progress history from train_summary.json (curves.ts): throughput and loss curves. */
  training?: readonly RoundCurve[] | undefined;
};

export type ReportInput = {
  title: string;
  generatedAt: string;
  runs: readonly ReportRun[];
  summaries: readonly StrategySummary[];
  /** Free-text lines shown under the title (setup, command, caveats). */
  notes?: readonly string[];
};

const PHASE_COLOURS: Record<string, string> = {
  Promoted: "#2ca02c",
  Passed: "#8fd18f",
  Rejected: "#d62728",
  Failed: "#7f0000",
  Gating: "#f2c14e",
};

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}
const pct = (x: number | null | undefined) => (typeof x === "number" ? (100 * x).toFixed(1) : "n/a");

/** Light yellow (low) to dark blue (high), readable with black or white text. */
export function heatColour(v: number, max: number): string {
  const t = max > 0 ? Math.max(0, Math.min(1, v / max)) : 0;
  const lerp = (a: number, b: number) => Math.round(a + (b - a) * t);
  return `rgb(${lerp(255, 8)},${lerp(247, 48)},${lerp(188, 107)})`;
}

function heatmap(strategy: string, m: TicMatrix, max: number): string {
  const cell = 46;
  const left = 120;
  const top = 34;
  const w = left + cell * m.slices.length + 10;
  const h = top + cell * m.rounds.length + 10;
  const parts: string[] = [];
  m.slices.forEach((s, j) => {
    parts.push(`<text x="${left + j * cell + cell / 2}" y="${top - 8}" text-anchor="middle">${escapeHtml(s)}</text>`);
  });
  m.rounds.forEach((r, i) => {
    const label = `round ${r} (${(m.roundSlices[i] ?? []).join(",")})`;
    parts.push(
      `<text x="${left - 6}" y="${top + i * cell + cell / 2 + 4}" text-anchor="end">${escapeHtml(label)}</text>`,
    );
    m.slices.forEach((s, j) => {
      const v = m.values[i]?.[j];
      const x = left + j * cell;
      const y = top + i * cell;
      if (v === null || v === undefined) {
        parts.push(
          `<rect class="cell missing" x="${x}" y="${y}" width="${cell - 2}" height="${cell - 2}" fill="#eee"/>`,
        );
        return;
      }
      const dark = max > 0 && v / max > 0.55;
      parts.push(
        `<rect class="cell" data-round="${r}" data-slice="${escapeHtml(s)}" data-value="${v}" x="${x}" y="${y}" ` +
          `width="${cell - 2}" height="${cell - 2}" fill="${heatColour(v, max)}">` +
          `<title>round ${r} on ${escapeHtml(s)}: ` +
          `${pct(v)}</title></rect>`,
        `<text x="${x + cell / 2 - 1}" y="${y + cell / 2 + 4}" text-anchor="middle" fill="${dark ? "#fff" : "#000"}">` +
          `${pct(v)}</text>`,
      );
    });
  });
  return (
    `<figure><figcaption>${escapeHtml(strategy)}</figcaption>` +
    `<svg class="heatmap" data-strategy="${escapeHtml(strategy)}" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" ` +
    `role="img" aria-label="TiC matrix of ${escapeHtml(strategy)}">${parts.join("")}</svg></figure>`
  );
}

/** Samples seen (x) against mean R@1 (y): backward as circles, ID as squares, one colour per strategy. */
function computePlot(summaries: readonly StrategySummary[]): string {
  const W = 560;
  const H = 320;
  const pad = { l: 56, r: 150, t: 16, b: 44 };
  const xs = summaries.map((s) => s.samplesSeen);
  const ys = summaries.flatMap((s) => [s.id?.mean, s.backward?.mean]).filter((v): v is number => v !== undefined);
  const xMax = Math.max(1, ...xs) * 1.08;
  const yMax = Math.max(0.01, ...ys) * 1.15;
  const px = (x: number) => pad.l + (x / xMax) * (W - pad.l - pad.r);
  const py = (y: number) => H - pad.b - (y / yMax) * (H - pad.t - pad.b);
  const parts: string[] = [
    `<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="#333"/>`,
    `<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" stroke="#333"/>`,
    `<text x="${(W - pad.r + pad.l) / 2}" y="${H - 8}" text-anchor="middle">samples seen over the run</text>`,
    `<text x="14" y="${(H - pad.b + pad.t) / 2}" transform="rotate(-90 14 ${(H - pad.b + pad.t) / 2})" ` +
      `text-anchor="middle">mean R@1 (%)</text>`,
  ];
  for (let k = 0; k <= 4; k++) {
    const y = (yMax * k) / 4;
    parts.push(`<text x="${pad.l - 6}" y="${py(y) + 4}" text-anchor="end">${pct(y)}</text>`);
    const x = (xMax * k) / 4;
    parts.push(`<text x="${px(x)}" y="${H - pad.b + 16}" text-anchor="middle">${Math.round(x)}</text>`);
  }
  summaries.forEach((s, i) => {
    const c = REPLAY[s.strategy].colour;
    const x = px(s.samplesSeen);
    if (s.backward) {
      parts.push(
        `<circle class="point" data-strategy="${escapeHtml(s.label)}" data-metric="backward" cx="${x}" ` +
          `cy="${py(s.backward.mean)}" r="6" fill="${c}">` +
          `<title>${escapeHtml(s.label)} backward ${pct(s.backward.mean)}</title></circle>`,
      );
    }
    if (s.id) {
      parts.push(
        `<rect class="point" data-strategy="${escapeHtml(s.label)}" data-metric="id" x="${x - 5}" y="${py(s.id.mean) - 5}" ` +
          `width="10" height="10" fill="none" stroke="${c}" stroke-width="2">` +
          `<title>${escapeHtml(s.label)} ID ${pct(s.id.mean)}</title></rect>`,
      );
    }
    parts.push(
      `<circle cx="${W - pad.r + 16}" cy="${pad.t + 10 + i * 18}" r="5" fill="${c}"/>`,
      `<text x="${W - pad.r + 26}" y="${pad.t + 14 + i * 18}">${escapeHtml(s.label)}</text>`,
    );
  });
  parts.push(`<text x="${W - pad.r + 10}" y="${pad.t + 24 + summaries.length * 18}">● backward  □ ID</text>`);
  return (
    `<svg class="plot" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" ` +
    `aria-label="compute against quality">${parts.join("")}</svg>`
  );
}

/** Each round as a bar over wall-clock time, coloured by phase, with its gates and promotion. */
function timeline(run: ReportRun): string {
  const rounds = run.rounds.filter((r) => r.startedAt);
  const t = (s: string | undefined) => (s ? Date.parse(s) : NaN);
  const t0 = Math.min(...rounds.map((r) => t(r.startedAt)));
  const t1 = Math.max(
    ...rounds.map((r) => (Number.isFinite(t(r.finishedAt)) ? t(r.finishedAt) : t(r.startedAt) + 1000)),
  );
  const W = 760;
  const labels = 190; // a column right of the bars for each round's verdict
  const left = 90;
  const span = Math.max(1, t1 - t0);
  const x = (ms: number) => left + ((ms - t0) / span) * (W - left - labels - 10);
  const rowH = 26;
  const parts: string[] = [];
  rounds.forEach((r, i) => {
    const y = 6 + i * rowH;
    const a = x(t(r.startedAt));
    const b = Number.isFinite(t(r.finishedAt)) ? x(t(r.finishedAt)) : a + 4;
    const gates = (r.gates ?? []).map(
      (g) => `${g.passed ? "pass" : "FAIL"} ${g.metric} ${g.observed ?? "?"} vs ${g.threshold ?? "?"}`,
    );
    const tip = [`round ${r.index} on ${describeSlices(r)}: ${r.phase}`, r.reason ?? "", ...gates]
      .filter(Boolean)
      .join("\n");
    parts.push(
      `<text x="${left - 6}" y="${y + 15}" text-anchor="end">round ${r.index}</text>`,
      `<rect class="round" data-phase="${r.phase}" x="${a}" y="${y}" ` +
        `width="${Math.max(4, b - a)}" height="${rowH - 6}" ` +
        `fill="${PHASE_COLOURS[r.phase] ?? "#9ecae1"}"><title>${escapeHtml(tip)}</title></rect>`,
    );
    const badge = [
      r.gates?.length ? (r.gates.every((g) => g.passed) ? "gates ✓" : "gates ✗") : "",
      r.promotedVersion ? `→ v${r.promotedVersion}` : "",
      r.phase,
    ]
      .filter(Boolean)
      .join(" ");
    parts.push(`<text x="${W - labels}" y="${y + 15}">${escapeHtml(badge)}</text>`);
  });
  const H = 10 + rounds.length * rowH;
  return (
    `<div class="timeline"><h4>${escapeHtml(run.name)} (${run.strategy}, seed ${escapeHtml(run.seed)})</h4>` +
    `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">${parts.join("")}</svg></div>`
  );
}

const ROUND_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

/** One line per round of `value` against samples done in that round. */
function curvePlot(kind: "throughput" | "loss", curves: readonly RoundCurve[]): string {
  const value = (p: RoundCurve["points"][number]) => (kind === "loss" ? p.loss : p.samplesPerSecond);
  const W = 360;
  const H = 200;
  const pad = { l: 48, r: 10, t: 10, b: 32 };
  const all = curves.flatMap((c) => c.points.map(value)).filter((v): v is number => typeof v === "number");
  const xMax = Math.max(1, ...curves.flatMap((c) => c.points.map((p) => p.samplesDone)));
  const yMax = Math.max(1e-9, ...all) * 1.1;
  const px = (x: number) => pad.l + (x / xMax) * (W - pad.l - pad.r);
  const py = (y: number) => H - pad.b - (y / yMax) * (H - pad.t - pad.b);
  const parts = [
    `<line x1="${pad.l}" y1="${H - pad.b}" x2="${W - pad.r}" y2="${H - pad.b}" stroke="#333"/>`,
    `<line x1="${pad.l}" y1="${pad.t}" x2="${pad.l}" y2="${H - pad.b}" stroke="#333"/>`,
    `<text x="${(W + pad.l) / 2}" y="${H - 6}" text-anchor="middle">samples done in the round</text>`,
    `<text x="${pad.l - 4}" y="${pad.t + 8}" text-anchor="end">${yMax.toPrecision(3)}</text>`,
    `<text x="${pad.l - 4}" y="${H - pad.b}" text-anchor="end">0</text>`,
  ];
  curves.forEach((c, i) => {
    const pts = c.points.filter((p) => typeof value(p) === "number");
    const colour = ROUND_COLOURS[i % ROUND_COLOURS.length];
    parts.push(
      `<polyline class="curve" data-round="${c.round}" fill="none" stroke="${colour}" stroke-width="1.5" ` +
        `points="${pts.map((p) => `${px(p.samplesDone).toFixed(1)},${py(value(p)!).toFixed(1)}`).join(" ")}">` +
        `<title>round ${c.round}</title></polyline>`,
    );
  });
  const label = kind === "loss" ? "training loss" : "samples/s";
  return (
    `<figure><figcaption>${label}</figcaption><svg class="curves" data-kind="${kind}" width="${W}" height="${H}" ` +
    `viewBox="0 0 ${W} ${H}" role="img" aria-label="${label} per round">${parts.join("")}</svg></figure>`
  );
}

function trainingCurves(run: ReportRun): string {
  if (!run.training?.length) return "";
  return (
    `<div class="training"><h4>${escapeHtml(run.name)} (${run.strategy}, seed ${escapeHtml(run.seed)})</h4>` +
    `${curvePlot("throughput", run.training)}${curvePlot("loss", run.training)}</div>`
  );
}

function summaryTable(rows: readonly StrategySummary[]): string {
  const body = rows.map((r) => {
    const cells = tableCells(r).map(escapeHtml);
    cells[0] = `<span class="swatch" style="background:${REPLAY[r.strategy].colour}"></span>${cells[0]}`;
    return `<tr>${cells.map((c) => `<td>${c}</td>`).join("")}</tr>`;
  });
  return (
    `<table class="summary"><thead><tr>${TABLE_HEADER.map((h) => `<th>${h}</th>`).join("")}</tr></thead>` +
    `<tbody>${body.join("")}</tbody></table>`
  );
}

function computeSaving(runs: readonly ReportRun[]): string {
  const rows = runs
    .filter((r) => r.compute)
    .map((r) => {
      const c = r.compute!;
      return (
        `<tr><td>${escapeHtml(r.name)}</td><td>${r.strategy}</td><td>${c.samplesSeen}</td>` +
        `<td>${c.oracleEquivalentSamples}</td><td>${c.savingVsOracle.toFixed(2)}×</td></tr>`
      );
    });
  return (
    `<table class="compute"><thead><tr><th>run</th><th>replay</th><th>samples seen</th>` +
    `<th>an Oracle retrained every round</th><th>saving</th></tr></thead><tbody>${rows.join("")}</tbody></table>`
  );
}

export function reportHtml(input: ReportInput): string {
  // One heatmap per table row: a strategy, or a variant of one (weight-space merging).
  const strategies = [...new Set(input.runs.map(labelOf))];
  const means = strategies.map((s) => ({
    s,
    m: meanMatrix(input.runs.filter((r) => labelOf(r) === s).map((r) => r.matrix)),
  }));
  const max = Math.max(0, ...means.flatMap(({ m }) => (m?.values ?? []).flat().filter((v): v is number => v !== null)));
  const notes = (input.notes ?? []).map((n) => `<p class="note">${escapeHtml(n)}</p>`).join("");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(input.title)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:8px 0 16px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}.swatch{display:inline-block;width:10px;height:10px;margin-right:6px}
svg text{font-size:11px}figure{display:inline-block;margin:0 16px 16px 0}figcaption{font-weight:600}
.note{color:#555;margin:2px 0}
</style></head><body>
<h1>${escapeHtml(input.title)}</h1>
<p class="note">Generated ${escapeHtml(input.generatedAt)}. Mean R@1 = (image→text R@1 + text→image R@1) / 2, in %.
ID: model after round t on slice t; backward: on earlier slices; forward: on later ones (TiC-CLIP).</p>
${notes}
<h2>Summary</h2>
${summaryTable(input.summaries)}
<h2>Compute against quality</h2>
${computePlot(input.summaries)}
<h2>Compute saving</h2>
${computeSaving(input.runs)}
<h2>TiC matrices</h2>
<p class="note">Row: the model after a round; column: the slice it is scored on. Mean over seeds.</p>
${means.map(({ s, m }) => (m ? heatmap(s, m, max) : "")).join("\n")}
<h2>Round timeline</h2>
${input.runs.map(timeline).join("\n")}
${input.runs.some((r) => r.training?.length) ? `<h2>Training curves</h2>\n<p class="note">Each round's throughput and smoothed loss as its trainer reported them (progress.json, kept in train_summary.json).</p>\n${input.runs.map(trainingCurves).join("\n")}` : ""}
</body></html>
`;
}
