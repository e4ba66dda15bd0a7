// Folds TiC matrices of several runs (strategies x seeds) into the experiment's table: ID,
// backward and forward mean R@1 with their spread over seeds, samples seen and the ratio to
// Oracle. Pure functions, no I/O.
import type { ReplayStrategy } from "../api/continual-clip-run.ts";
import type { TicMatrix } from "../evaluation/tic.ts";

export type RunResult = {
  strategy: ReplayStrategy;
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

export type Stat = { mean: number; min: number; max: number; n: number } | null;

export type StrategySummary = {
  strategy: ReplayStrategy;
  seeds: number;
  id: Stat;
  backward: Stat;
  forward: Stat;
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

export function summarize(results: readonly RunResult[], order: readonly ReplayStrategy[]): StrategySummary[] {
  const oracle = stat(results.filter((r) => r.strategy === "Oracle").map((r) => r.samplesSeen));
  return order
    .map((strategy) => results.filter((r) => r.strategy === strategy))
    .filter((rs) => rs.length > 0)
    .map((rs) => {
      const samples = stat(rs.map((r) => r.samplesSeen))!.mean;
      return {
        strategy: rs[0]!.strategy,
        seeds: rs.length,
        id: stat(rs.map((r) => r.matrix.summary.id)),
        backward: stat(rs.map((r) => r.matrix.summary.backward)),
        forward: stat(rs.map((r) => r.matrix.summary.forward)),
        samplesSeen: samples,
        computeVsOracle: oracle ? samples / oracle.mean : null,
        chance: stat(rs.map((r) => r.chance))?.mean ?? null,
      };
    });
}

const pct = (x: number) => (100 * x).toFixed(1);
/** "41.2 ±1.3": the mean and half the range over seeds, in R@1 points. */
export const formatStat = (s: Stat) => (s ? `${pct(s.mean)} ±${pct((s.max - s.min) / 2)}` : "n/a");

export const TABLE_HEADER = [
  "strategy",
  "seeds",
  "ID R@1",
  "backward R@1",
  "forward R@1",
  "samples seen",
  "x Oracle",
  "chance",
];

/** The cells of each row of the experiment's table (R@1 in points), in TABLE_HEADER's order. */
export function tableCells(r: StrategySummary): string[] {
  return [
    r.strategy,
    String(r.seeds),
    formatStat(r.id),
    formatStat(r.backward),
    formatStat(r.forward),
    String(Math.round(r.samplesSeen)),
    r.computeVsOracle === null ? "n/a" : r.computeVsOracle.toFixed(2),
    r.chance === null ? "n/a" : pct(r.chance),
  ];
}

/** The experiment's table as fixed-width text. */
export function formatTable(rows: readonly StrategySummary[]): string {
  const body = rows.map(tableCells);
  const widths = TABLE_HEADER.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(TABLE_HEADER), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}
