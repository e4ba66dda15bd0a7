// TiC-CLIP bookkeeping (docs/design.md, Evaluation): which slices a round is scored on, how its
// per-slice scores fold into the metric paths gates name, and the matrix E[i][j] over rounds.
// Pure functions, no I/O.
import { compareSliceIds } from "../api/slice-manifest.ts";
import type { RetrievalMetrics, ZeroShotMetrics } from "./metrics.ts";

/** How a slice relates to a round: trained on in this round, before it, or not yet seen. */
export type Relation = "backward" | "id" | "forward";
export const RELATIONS: readonly Relation[] = ["id", "backward", "forward"];

const newest = (ids: readonly string[]) => [...ids].sort(compareSliceIds).at(-1);

export function relationOf(sliceId: string, roundSlices: readonly string[]): Relation {
  if (roundSlices.includes(sliceId)) return "id";
  const last = newest(roundSlices);
  return last !== undefined && compareSliceIds(sliceId, last) < 0 ? "backward" : "forward";
}

/**
 * The slices round i is scored on: every slice with a pack up to the round's newest slice, plus
 * the next one when it exists (its forward transfer). Returned in time order.
 */
export function slicesToScore(withPacks: readonly string[], roundSlices: readonly string[]): string[] {
  const last = newest(roundSlices);
  if (last === undefined) throw new Error("a round has at least one slice");
  const sorted = [...new Set(withPacks)].sort(compareSliceIds);
  const seen = sorted.filter((s) => compareSliceIds(s, last) <= 0);
  const next = sorted.find((s) => compareSliceIds(s, last) > 0);
  return next === undefined ? seen : [...seen, next];
}

export type SliceScore = { sliceId: string; metrics: RetrievalMetrics };
export type ZeroShotScore = { name: string; metrics: ZeroShotMetrics };

export type RoundMetrics = {
  /** Flat metric paths, as gates and status.rounds[].metrics name them. */
  metrics: Record<string, number>;
  /** Metric path prefixes that have no value this round, with why (gates on them pass). */
  notApplicable: Record<string, string>;
};

function meanOf(rows: readonly Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of Object.keys(rows[0] ?? {})) out[key] = rows.reduce((s, r) => s + (r[key] ?? NaN), 0) / rows.length;
  return out;
}

/**
 * Folds per-slice scores into retrieval.<id|backward|forward|latest>.<metric> (means over the
 * slices of each relation; latest = the round's newest slice) and zeroShot.<name>.<top1|top5>.
 * backward and forward are "not applicable" when no such slice was scored; id and latest are
 * simply absent when the round's own slices have no pack, so a gate on them fails.
 */
export function roundMetrics(
  scores: readonly SliceScore[],
  roundSlices: readonly string[],
  zeroShot: readonly ZeroShotScore[],
): RoundMetrics {
  const metrics: Record<string, number> = {};
  const notApplicable: Record<string, string> = {};
  const put = (prefix: string, values: Record<string, number>) => {
    for (const [k, v] of Object.entries(values)) metrics[`${prefix}.${k}`] = v;
  };
  for (const rel of RELATIONS) {
    const rows = scores.filter((s) => relationOf(s.sliceId, roundSlices) === rel).map((s) => s.metrics);
    if (rows.length > 0) put(`retrieval.${rel}`, meanOf(rows));
    else if (rel === "backward")
      notApplicable["retrieval.backward"] = "no slice before this round's slices has an eval pack";
    else if (rel === "forward")
      notApplicable["retrieval.forward"] = "no slice after this round's slices has an eval pack yet";
  }
  const last = newest(roundSlices);
  const latest = scores.find((s) => s.sliceId === last);
  if (latest) put("retrieval.latest", latest.metrics);
  for (const z of zeroShot) put(`zeroShot.${z.name}`, z.metrics);
  return { metrics, notApplicable };
}

/** One row of the TiC matrix: the model after one round, scored on slices (meanRecallAt1). */
export type TicRow = { round: number; roundSlices: string[]; cells: Record<string, number> };

export type TicMatrix = {
  metric: "meanRecallAt1";
  rounds: number[];
  roundSlices: string[][];
  slices: string[];
  /** values[r][s]: round rounds[r] on slice slices[s]; null where not scored. */
  values: (number | null)[][];
  /** Means over all scored cells of each relation (TiC-CLIP's ID, backward, forward transfer). */
  summary: { id: number | null; backward: number | null; forward: number | null };
};

export function ticMatrix(rows: readonly TicRow[]): TicMatrix {
  const byRound = new Map<number, TicRow>();
  for (const r of rows) byRound.set(r.round, r); // a later row for the same round wins
  const ordered = [...byRound.values()].sort((a, b) => a.round - b.round);
  const slices = [...new Set(ordered.flatMap((r) => Object.keys(r.cells)))].sort(compareSliceIds);
  const sums = { id: [0, 0], backward: [0, 0], forward: [0, 0] } as Record<Relation, [number, number]>;
  const values = ordered.map((r) =>
    slices.map((s) => {
      const v = r.cells[s];
      if (v === undefined) return null;
      const acc = sums[relationOf(s, r.roundSlices)];
      acc[0] += v;
      acc[1] += 1;
      return v;
    }),
  );
  const mean = (rel: Relation) => (sums[rel][1] ? sums[rel][0] / sums[rel][1] : null);
  return {
    metric: "meanRecallAt1",
    rounds: ordered.map((r) => r.round),
    roundSlices: ordered.map((r) => [...r.roundSlices]),
    slices,
    values,
    summary: { id: mean("id"), backward: mean("backward"), forward: mean("forward") },
  };
}
