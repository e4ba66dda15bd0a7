// A made-up but consistent experiment (strategies x seeds, T slices) for report tests.
import type { ReplayStrategy, RoundStatus } from "../../operator/api/continual-clip-run.ts";
import { ticMatrix } from "../../operator/evaluation/tic.ts";
import type { ReportRun } from "../../operator/report/html.ts";
import type { RunResult } from "../../operator/report/summary.ts";

export const SLICES = ["2016", "2017", "2018", "2019"];

export function fixtureRun(strategy: ReplayStrategy, seed: number, c = 1000): ReportRun & RunResult {
  const rows = SLICES.map((s, i) => ({
    round: i,
    roundSlices: [s],
    cells: Object.fromEntries(SLICES.map((t, j) => [t, Math.max(0, 0.5 - 0.1 * Math.abs(i - j) + 0.01 * seed)])),
  }));
  const t0 = Date.parse("2026-01-01T00:00:00Z");
  const rounds: RoundStatus[] = SLICES.map((s, i) => ({
    index: i,
    slices: [s],
    replay: strategy,
    phase: i === 2 ? "Rejected" : "Promoted",
    samples: strategy === "Oracle" ? (i + 1) * c : c,
    startedAt: new Date(t0 + i * 60_000).toISOString(),
    finishedAt: new Date(t0 + i * 60_000 + 45_000).toISOString(),
    gates: [{ metric: "retrieval.id.meanRecallAt1", observed: 0.5, threshold: 0.1, passed: i !== 2 }],
    ...(i !== 2 ? { promotedVersion: i + 1 } : {}),
  }));
  const samplesSeen = strategy === "Oracle" ? 10 * c : 4 * c;
  return {
    name: `${strategy.toLowerCase()}-s${seed}`,
    run: `${strategy.toLowerCase()}-s${seed}`,
    strategy,
    seed: String(seed),
    matrix: ticMatrix(rows),
    rounds,
    samplesSeen,
    savingVsOracle: strategy === "Oracle" ? 1 : 2.5,
    compute: { samplesSeen, oracleEquivalentSamples: 10 * c, savingVsOracle: (10 * c) / samplesSeen },
    chance: 0.02,
  };
}
