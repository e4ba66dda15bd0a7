// Folds TiC matrices of several runs (strategies x seeds) into the experiment's table: ID,
// backward and forward mean R@1 with their spread over seeds (and a 95% bootstrap interval over
// seeds and pack items when the runs carry their cells' item counts), samples seen and the ratio to
// Oracle. Pure functions, no I/O (the bootstrap's random numbers come from a seeded generator).
import type { ReplayStrategy } from "../api/continual-clip-run.ts";
import { relationOf, type Relation, type TicMatrix } from "../evaluation/tic.ts";

export type RunResult = {
  strategy: ReplayStrategy;
  /** The table row's name when it is not the strategy's (a variant: "CumulativeAll + EMA 0.5"). */
  variant?: string | undefined;
  /** Items behind each cell of `matrix` (same shape): what a cell's R@1 is a mean over (bootstrapItems). */
  items?: (number | null)[][] | undefined;
  seed: string;
  run: string;
  matrix: TicMatrix;
  /** status.compute.samplesSeen. */
  samplesSeen: number;
  /** status.compute.savingVsOracle. */
  savingVsOracle: number;
  /** Mean R@1 a random ranking scores on the run's packs, when known. */
  chance?: number | undefined;
};

export type Stat = {
  mean: number;
  min: number;
  max: number;
  n: number;
  /** 95% bootstrap interval over seeds and pack items (bootstrapCi), when item counts are known. */
  ci?: [number, number];
} | null;

export type StrategySummary = {
  /** The row's name: the variant, else the strategy. */
  label: string;
  strategy: ReplayStrategy;
  seeds: number;
  id: Stat;
  backward: Stat;
  forward: Stat;
  /** The last round's model on every slice: what a run serves after T rounds. */
  final: Stat;
  samplesSeen: number;
  /** samplesSeen / the Oracle's samplesSeen (null without an Oracle run). */
  computeVsOracle: number | null;
  chance: number | null;
};

export function stat(values: readonly (number | null | undefined)[]): Stat {
  const xs = values.filter((v): v is number => typeof v === "number" && Number.isFinite(v));
  if (xs.length === 0) return null;
  return { mean: xs.reduce((a, b) => a + b, 0) / xs.length, min: Math.min(...xs), max: Math.max(...xs), n: xs.length };
}

/** The element-wise mean of several runs' matrices over the same slices (null where none scored). */
export function meanMatrix(ms: readonly TicMatrix[]): TicMatrix | null {
  const first = ms[0];
  if (!first) return null;
  const values = first.values.map((row, i) => row.map((_, j) => stat(ms.map((m) => m.values[i]?.[j]))?.mean ?? null));
  const summary = {
    id: stat(ms.map((m) => m.summary.id))?.mean ?? null,
    backward: stat(ms.map((m) => m.summary.backward))?.mean ?? null,
    forward: stat(ms.map((m) => m.summary.forward))?.mean ?? null,
  };
  return { ...first, values, summary };
}

export const labelOf = (r: Pick<RunResult, "strategy" | "variant">) => r.variant ?? r.strategy;

/** One row per label in `order` (strategies, then variants) that has runs. */
export function summarize(results: readonly RunResult[], order: readonly string[]): StrategySummary[] {
  const oracle = stat(results.filter((r) => labelOf(r) === "Oracle").map((r) => r.samplesSeen));
  return order
    .map((label) => results.filter((r) => labelOf(r) === label))
    .filter((rs) => rs.length > 0)
    .map((rs, i) => {
      const samples = stat(rs.map((r) => r.samplesSeen))!.mean;
      const withCi = (m: Measure) => {
        const st = stat(rs.map((r) => measureOf(r, m)));
        const cells = rs.map((r) => measureCells(r, m));
        if (!st || cells.some((c) => c === null || c.length === 0)) return st;
        return { ...st, ci: bootstrapCi(cells as Cell[][], { seed: 1 + i }) };
      };
      return {
        label: labelOf(rs[0]!),
        strategy: rs[0]!.strategy,
        seeds: rs.length,
        id: withCi("id"),
        backward: withCi("backward"),
        forward: withCi("forward"),
        final: withCi("final"),
        samplesSeen: samples,
        computeVsOracle: oracle ? samples / oracle.mean : null,
        chance: stat(rs.map((r) => r.chance))?.mean ?? null,
      };
    });
}

/** One cell of a run's TiC matrix: its mean R@1 and the number of pack items it is a mean over. */
export type Cell = { value: number; items: number };

/** A run's cells of one relation (ID: the diagonal, ...) with their item counts; null without counts. */
export function relationCells(r: Pick<RunResult, "matrix" | "items">, rel: Relation): Cell[] | null {
  if (!r.items) return null;
  const m = r.matrix;
  const out: Cell[] = [];
  for (const [i, row] of m.values.entries()) {
    for (const [j, v] of row.entries()) {
      if (v === null || relationOf(m.slices[j]!, m.roundSlices[i]!) !== rel) continue;
      const items = r.items[i]?.[j];
      if (!items) throw new Error(`no item count for round ${m.rounds[i]} on slice ${m.slices[j]}`);
      out.push({ value: v, items });
    }
  }
  return out;
}

/** What a table column averages: a relation of the TiC matrix, or the last round's row (final). */
export type Measure = Relation | "final";

/** A run's value of a measure (null where nothing was scored). */
export function measureOf(r: Pick<RunResult, "matrix">, m: Measure): number | null {
  if (m !== "final") return r.matrix.summary[m];
  return stat(r.matrix.values.at(-1) ?? [])?.mean ?? null;
}

/** A run's cells of a measure with their item counts; null without counts. */
export function measureCells(r: Pick<RunResult, "matrix" | "items">, m: Measure): Cell[] | null {
  if (m !== "final") return relationCells(r, m);
  if (!r.items) return null;
  const last = r.matrix.values.length - 1;
  return (r.matrix.values[last] ?? []).flatMap((v, j) =>
    v === null ? [] : [{ value: v, items: r.items![last]?.[j] ?? Number.NaN }],
  );
}

/** Mulberry32: a small seeded generator, so an interval is the same every time it is computed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type BootstrapOptions = { resamples?: number; level?: number; seed?: number };

/**
 * The percentile bootstrap both intervals below share: COUNT runs (seeds) drawn with replacement,
 * DRAW giving a drawn run's value with its cells' items redrawn by REDRAW (the mean of the cells,
 * each cell of R@1 p over n items redrawn as Binomial(n, p) / n).
 */
function percentileBootstrap(
  count: number,
  draw: (run: number, redraw: (cells: readonly Cell[]) => number) => number,
  opts: BootstrapOptions,
): [number, number] {
  const { resamples = 2000, level = 0.95, seed = 1 } = opts;
  const rand = seededRandom(seed);
  // Binomial(n, p) / n: exact (n Bernoulli draws) up to 1000 items, its normal approximation beyond.
  const binomial = (n: number, p: number) => {
    if (n > 1000) {
      const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
      return Math.min(1, Math.max(0, p + z * Math.sqrt((p * (1 - p)) / n)));
    }
    let k = 0;
    for (let i = 0; i < n; i++) if (rand() < p) k++;
    return k / n;
  };
  const redraw = (cells: readonly Cell[]) => {
    let sum = 0;
    for (const c of cells) sum += binomial(Math.round(c.items), c.value);
    return sum / cells.length;
  };
  const means: number[] = [];
  for (let b = 0; b < resamples; b++) {
    let total = 0;
    for (let r = 0; r < count; r++) total += draw(Math.floor(rand() * count), redraw);
    means.push(total / count);
  }
  means.sort((a, b) => a - b);
  const at = (q: number) => means[Math.min(resamples - 1, Math.max(0, Math.floor(q * resamples)))]!;
  return [at((1 - level) / 2), at(1 - (1 - level) / 2)];
}

/**
 * 95% (by default) percentile bootstrap interval of the mean over runs of each run's mean cell, with
 * both sources of noise resampled: the runs (seeds) with replacement, then within each drawn run the
 * items of every cell. Per-item hits are not stored, so a cell of R@1 p over n items is redrawn as
 * Binomial(n, p) / n (a parametric bootstrap over items; it treats cells as independent, while one
 * pack's items recur down a column, so the item part is if anything narrow). `runs[r]` is run r's
 * cells; every run needs one at least.
 */
export function bootstrapCi(runs: readonly (readonly Cell[])[], opts: BootstrapOptions = {}): [number, number] {
  if (runs.length === 0 || runs.some((c) => c.length === 0)) throw new Error("bootstrapCi: every run needs a cell");
  return percentileBootstrap(runs.length, (r, redraw) => redraw(runs[r]!), opts);
}

/**
 * The same interval for a paired difference: `pairs[r]` is seed r's cells of a row and of its
 * baseline trained on the same seed (same slices, same round 0); a drawn seed contributes the
 * difference of the two redrawn means. Seed-to-seed swings that move both rows alike cancel, so a
 * difference can be clear while both rows' own intervals overlap.
 */
export function pairedBootstrapCi(
  pairs: readonly (readonly [readonly Cell[], readonly Cell[]])[],
  opts: BootstrapOptions = {},
): [number, number] {
  if (pairs.length === 0 || pairs.some(([a, b]) => a.length === 0 || b.length === 0))
    throw new Error("pairedBootstrapCi: every pair needs cells on both sides");
  return percentileBootstrap(pairs.length, (r, redraw) => redraw(pairs[r]![0]) - redraw(pairs[r]![1]), opts);
}

/** A row against a baseline row, paired by seed: the per-seed differences of ID and backward R@1. */
export type Difference = { label: string; baseline: string; seeds: number; id: Stat; backward: Stat; final: Stat };

/**
 * The rows the others are compared with, paired by seed: the Oracle and CumulativeAll where the
 * table has them (the experiment), else its first row (the ablation's paper arm).
 */
export function differenceBaselines(order: readonly string[]): string[] {
  const named = ["Oracle", "CumulativeAll"].filter((l) => order.includes(l));
  return named.length ? named : order.slice(0, 1);
}

/** The paired differences against each of differenceBaselines, as printable lines (none: []). */
export function differenceLines(results: readonly RunResult[], order: readonly string[]): string[] {
  return differenceBaselines(order).flatMap((baseline) => {
    const rows = pairedDifferences(results, order, baseline);
    return rows.length
      ? [`Paired by seed, minus ${baseline}, R@1 in points [95% bootstrap interval]:`, formatDifferences(rows)]
      : [];
  });
}

/** Each row of ORDER but BASELINE against BASELINE, over the seeds both have (none: no row). */
export function pairedDifferences(
  results: readonly RunResult[],
  order: readonly string[],
  baseline: string,
): Difference[] {
  const base = new Map(results.filter((r) => labelOf(r) === baseline).map((r) => [r.seed, r]));
  return order
    .filter((label) => label !== baseline)
    .map((label, i) => {
      const pairs = results
        .filter((r) => labelOf(r) === label && base.has(r.seed))
        .map((r) => [r, base.get(r.seed)!] as const);
      const diff = (m: Measure): Stat => {
        const st = stat(pairs.map(([a, b]) => (measureOf(a, m) ?? Number.NaN) - (measureOf(b, m) ?? Number.NaN)));
        const cells = pairs.map(([a, b]) => [measureCells(a, m), measureCells(b, m)] as const);
        if (!st || st.n !== pairs.length || cells.some(([a, b]) => !a?.length || !b?.length)) return st;
        return { ...st, ci: pairedBootstrapCi(cells as [Cell[], Cell[]][], { seed: 1 + i }) };
      };
      return {
        label,
        baseline,
        seeds: pairs.length,
        id: diff("id"),
        backward: diff("backward"),
        final: diff("final"),
      };
    })
    .filter((d) => d.seeds > 0);
}

const pct = (x: number) => (100 * x).toFixed(1);
/**
 * In R@1 points: "41.2 [38.0, 44.1]", the mean and its 95% bootstrap interval, when known; else
 * "41.2 ±1.3", the mean and half the range over seeds.
 */
export const formatStat = (s: Stat) =>
  s
    ? s.ci
      ? `${pct(s.mean)} [${pct(s.ci[0])}, ${pct(s.ci[1])}]`
      : `${pct(s.mean)} ±${pct((s.max - s.min) / 2)}`
    : "n/a";

export const TABLE_HEADER = [
  "strategy",
  "seeds",
  "ID R@1",
  "backward R@1",
  "forward R@1",
  "final R@1",
  "samples seen",
  "x Oracle",
  "chance",
];

/** The cells of each row of the experiment's table (R@1 in points), in TABLE_HEADER's order. */
export function tableCells(r: StrategySummary): string[] {
  return [
    r.label,
    String(r.seeds),
    formatStat(r.id),
    formatStat(r.backward),
    formatStat(r.forward),
    formatStat(r.final),
    String(Math.round(r.samplesSeen)),
    r.computeVsOracle === null ? "n/a" : r.computeVsOracle.toFixed(2),
    r.chance === null ? "n/a" : pct(r.chance),
  ];
}

const signed = (x: number) => `${x >= 0 ? "+" : ""}${pct(x)}`;
/** In R@1 points, signed: "+18.7 [18.2, 19.6]" (the interval as in formatStat, else ±half range). */
export const formatDifference = (s: Stat) =>
  s
    ? s.ci
      ? `${signed(s.mean)} [${signed(s.ci[0])}, ${signed(s.ci[1])}]`
      : `${signed(s.mean)} ±${pct((s.max - s.min) / 2)}`
    : "n/a";

/** One line per row: "<row> - <baseline>: ID ..., backward ... (n seeds, paired)". */
export function formatDifferences(rows: readonly Difference[]): string {
  const width = Math.max(0, ...rows.map((r) => r.label.length));
  return rows
    .map(
      (r) =>
        `${r.label.padEnd(width)}  ID ${formatDifference(r.id)}  backward ${formatDifference(r.backward)}  final ${formatDifference(r.final)}  (${r.seeds} seeds, paired)`,
    )
    .join("\n");
}

/** The experiment's table as fixed-width text. */
export function formatTable(rows: readonly StrategySummary[]): string {
  const body = rows.map(tableCells);
  const widths = TABLE_HEADER.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(TABLE_HEADER), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}
