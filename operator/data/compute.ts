// Compute accounting for status.compute: what the run has spent against what retraining an Oracle
// from scratch at every round would have spent. TiC-CLIP: over T rounds an Oracle costs
// C*T(T+1)/2 samples against T*C for Cumulative, a saving of (T+1)/2.
import { REPLAY, type ReplayStrategy } from "../api/replay-strategies.ts";

export type FinishedRound = {
  /** 0-based round index t. */
  index: number;
  replay: ReplayStrategy;
  /** Samples the round actually trained on (C, or (t+1)C for Oracle). */
  samples: number;
  gpuSeconds?: number | undefined;
};

export type ComputeStatus = {
  samplesSeen: number;
  gpuSeconds: number;
  oracleEquivalentSamples: number;
  /** oracleEquivalentSamples / samplesSeen; 0 before any round finished. */
  savingVsOracle: number;
};

export const NO_COMPUTE: ComputeStatus = {
  samplesSeen: 0,
  gpuSeconds: 0,
  oracleEquivalentSamples: 0,
  savingVsOracle: 0,
};

/** C of a finished round: its samples over the rounds of budget it trained on (Oracle: (t+1)C). */
export function roundBudget(r: FinishedRound): number {
  return r.samples / REPLAY[r.replay].budgetRounds(r.index);
}

/** Samples an Oracle retrained from scratch at round t with the same budget C would see: (t+1)C. */
export function oracleSamples(r: FinishedRound): number {
  return (r.index + 1) * roundBudget(r);
}

/** Adds one finished round to the running totals (status keeps totals; rounds history is trimmed). */
export function accumulateCompute(prev: ComputeStatus | undefined, r: FinishedRound): ComputeStatus {
  const p = prev ?? NO_COMPUTE;
  const samplesSeen = p.samplesSeen + Math.round(r.samples);
  const oracleEquivalentSamples = p.oracleEquivalentSamples + Math.round(oracleSamples(r));
  return {
    samplesSeen,
    gpuSeconds: p.gpuSeconds + (r.gpuSeconds ?? 0),
    oracleEquivalentSamples,
    savingVsOracle: savingRatio(oracleEquivalentSamples, samplesSeen),
  };
}

/** Totals over a list of finished rounds. */
export function computeAccounting(rounds: FinishedRound[]): ComputeStatus {
  return rounds.reduce<ComputeStatus>((acc, r) => accumulateCompute(acc, r), NO_COMPUTE);
}

function savingRatio(oracle: number, seen: number): number {
  return seen > 0 ? Number((oracle / seen).toPrecision(6)) : 0;
}
