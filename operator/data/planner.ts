// The TiC-CLIP replay planner: a pure function from (strategy, slice history, new slices) to the
// round's data mixture, in the RoundPlan's terms. No I/O, no clock, deterministic.
//
// Weights. The trainer draws shards with replacement, picking source k with probability
// proportional to weight_k x shardCount_k, then a shard of it uniformly, and reads samples from
// it. The expected share of source k in the samples seen is therefore proportional to
// weight_k x samples_k (its shard count times its mean shard size). To give source k the share
// s_k we set weight_k = s_k x totalSamples / samples_k, which is exactly 1 for every source when
// the mixture is proportional to size (CumulativeAll, Restart, Oracle).
import type { ReplayStrategy } from "../api/continual-clip-run.ts";
import { compareSliceIds } from "../api/slice-manifest.ts";

export type PlannerShard = { uri: string; samples: number };
export type PlannerSlice = { id: string; shards: PlannerShard[] };

export type PlanInput = {
  replay: ReplayStrategy;
  /** C: samples seen per round. */
  samplesPerRound: number;
  /** B for CumulativeExp/CumulativeEqual; 0 means the size of the new data. */
  bufferSamples: number;
  /** 0-based index t of the round being planned. */
  round: number;
  /** Valid slices discovered so far, any order; slices sorting after the last new one are ignored. */
  slices: PlannerSlice[];
  /** The slices that arrived for this round (one under EverySlice, possibly several under Latest). */
  newSliceIds: string[];
};

export type MixtureSource = {
  sliceId: string;
  shards: PlannerShard[];
  weight: number;
  expectedShare: number;
};

export type RoundMixture = {
  /** Maps onto RoundPlan.data.sources, in slice order. */
  sources: MixtureSource[];
  /** RoundPlan.data.samples: C, or (t+1)C for Oracle. */
  samples: number;
  /** Whether the round initialises from the previous checkpoint (false: from scratch). */
  warmStart: boolean;
  /** Samples of compute this round costs (equal to samples). */
  computeSamples: number;
};

export type PlanResult = { ok: true; mixture: RoundMixture } | { ok: false; reason: PlanProblem; message: string };
export type PlanProblem = "NoNewSlices" | "UnknownSlice" | "EmptySlice" | "InvalidBudget";

const WARM_STARTS: Record<ReplayStrategy, boolean> = {
  Sequential: true,
  CumulativeAll: true,
  CumulativeExp: true,
  CumulativeEqual: true,
  Restart: false,
  Oracle: false,
};

export function sliceSamples(s: { shards: PlannerShard[] }): number {
  let n = 0;
  for (const sh of s.shards) n += sh.samples;
  return n;
}

export function planRound(input: PlanInput): PlanResult {
  const { replay, samplesPerRound: c, round: t } = input;
  if (!Number.isInteger(c) || c < 1 || !Number.isInteger(t) || t < 0 || !(input.bufferSamples >= 0)) {
    return { ok: false, reason: "InvalidBudget", message: `samplesPerRound must be a positive integer and round a non-negative integer (got ${c}, ${t})` };
  }
  if (input.newSliceIds.length === 0) return { ok: false, reason: "NoNewSlices", message: "a round needs at least one new slice" };

  const byId = new Map(input.slices.map((s) => [s.id, s]));
  const newIds = [...new Set(input.newSliceIds)].sort(compareSliceIds);
  for (const id of newIds) {
    const s = byId.get(id);
    if (!s) return { ok: false, reason: "UnknownSlice", message: `new slice ${id} is not among the valid slices` };
  }
  const last = newIds[newIds.length - 1]!;
  const isNew = new Set(newIds);
  // The history the round may see: everything up to its newest slice, never later arrivals.
  const history = [...byId.values()].filter((s) => compareSliceIds(s.id, last) <= 0).sort((a, b) => compareSliceIds(a.id, b.id));
  for (const s of history) {
    if (s.shards.length === 0 || sliceSamples(s) <= 0) {
      return { ok: false, reason: "EmptySlice", message: `slice ${s.id} has no samples` };
    }
  }
  const fresh = history.filter((s) => isNew.has(s.id));
  const past = history.filter((s) => !isNew.has(s.id));

  const shares = new Map<string, number>();
  const proportional = (slices: PlannerSlice[], total: number) => {
    const sum = slices.reduce((a, s) => a + sliceSamples(s), 0);
    for (const s of slices) shares.set(s.id, (shares.get(s.id) ?? 0) + (total * sliceSamples(s)) / sum);
  };

  switch (replay) {
    case "Sequential":
      proportional(fresh, 1);
      break;
    case "CumulativeAll":
    case "Restart":
    case "Oracle":
      proportional(history, 1);
      break;
    case "CumulativeExp":
    case "CumulativeEqual": {
      if (past.length === 0) {
        proportional(fresh, 1);
        break;
      }
      const freshSamples = fresh.reduce((a, s) => a + sliceSamples(s), 0);
      const buffer = input.bufferSamples > 0 ? input.bufferSamples : freshSamples;
      // The round trains on D_t plus the buffer, sampled uniformly: D_t gets |D_t| / (|D_t| + B).
      const bufferShare = buffer / (freshSamples + buffer);
      proportional(fresh, 1 - bufferShare);
      // past is in time order; the most recent past slice is k = 1.
      const raw = past.map((_, i) => (replay === "CumulativeExp" ? Math.pow(2, -(past.length - i)) : 1));
      const rawSum = raw.reduce((a, b) => a + b, 0);
      past.forEach((s, i) => shares.set(s.id, (bufferShare * raw[i]!) / rawSum));
      break;
    }
  }

  const used = history.filter((s) => (shares.get(s.id) ?? 0) > 0);
  const totalSamples = used.reduce((a, s) => a + sliceSamples(s), 0);
  const sources: MixtureSource[] = used.map((s) => {
    const share = shares.get(s.id)!;
    return {
      sliceId: s.id,
      shards: s.shards.map((sh) => ({ uri: sh.uri, samples: sh.samples })),
      weight: tidy((share * totalSamples) / sliceSamples(s)),
      expectedShare: Math.min(1, share),
    };
  });
  const samples = replay === "Oracle" ? (t + 1) * c : c;
  return { ok: true, mixture: { sources, samples, warmStart: WARM_STARTS[replay], computeSamples: samples } };
}

/** Rounds away float noise (0.9999999999999999 -> 1) so plans read well and diff stably. */
function tidy(x: number): number {
  const r = Number(x.toPrecision(12));
  return r > 0 ? r : x;
}

/** The share of samples each source yields under the trainer's sampling rule (weight x samples). */
export function impliedShares(sources: Pick<MixtureSource, "weight" | "shards">[]): number[] {
  const mass = sources.map((s) => s.weight * s.shards.reduce((a, sh) => a + sh.samples, 0));
  const total = mass.reduce((a, b) => a + b, 0);
  return mass.map((m) => m / total);
}
