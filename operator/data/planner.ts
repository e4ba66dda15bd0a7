// The TiC-CLIP replay planner: a pure function from (strategy, slice history, new slices) to the
// round's data mixture, in the RoundPlan's terms. No I/O, no clock, deterministic.
//
// Weights. The trainer draws shards with replacement, picking source k with probability
// proportional to weight_k x shardCount_k, then a shard of it uniformly, and reads samples from
// it. The expected share of source k in the samples seen is therefore proportional to
// weight_k x samples_k (its shard count times its mean shard size). To give source k the share
// s_k we set weight_k = s_k x totalSamples / samples_k, which is exactly 1 for every source when
// the mixture is proportional to size (CumulativeAll, Restart, Oracle).
//
// Buffers. CumulativeExp and CumulativeEqual replay a bounded buffer, as in the paper: each past
// slice keeps a stable prefix of its shards (manifest order), enough to hold the samples the
// strategy allots it (bufferTargets). Allotments only shrink, so the retained prefixes are nested
// and dropped shards can be deleted. The round then samples uniformly from the new data plus the
// allotted samples of the buffer: a shard prefix may hold a little more than its allotment, and
// its weight corrects for that, so the shares are exactly the paper's.
import type { ContinualClipRunSpec, MergeMode } from "../api/continual-clip-run.ts";
import { REPLAY, type ReplayStrategy } from "../api/replay-strategies.ts";
import type { RoundPlan } from "../api/round-plan.ts";
import { compareSliceIds } from "../api/slice-manifest.ts";

export type PlannerShard = { uri: string; samples: number };
/** How the trainer reads a slice's samples (slice manifest jsonCaptionField, heldOutFraction), passed through. */
export type SampleReading = { jsonCaptionField?: string | undefined; heldOutFraction?: number | undefined };
export type PlannerSlice = { id: string; shards: PlannerShard[] } & SampleReading;

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
  jsonCaptionField?: string;
  heldOutFraction?: number;
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
  /** Samples the strategy keeps in storage after this round: the shards its sources list (every
   * slice so far for data "all", only the new data for "new", the new data and the buffer for "buffer"). */
  storedSamples: number;
};

export type PlanResult = { ok: true; mixture: RoundMixture } | { ok: false; reason: PlanProblem; message: string };
export type PlanProblem = "NoNewSlices" | "UnknownSlice" | "EmptySlice" | "InvalidBudget";

export function sliceSamples(s: { shards: PlannerShard[] }): number {
  let n = 0;
  for (const sh of s.shards) n += sh.samples;
  return n;
}

export function planRound(input: PlanInput): PlanResult {
  const { replay, samplesPerRound: c, round: t } = input;
  if (!Number.isInteger(c) || c < 1 || !Number.isInteger(t) || t < 0 || !(input.bufferSamples >= 0)) {
    return {
      ok: false,
      reason: "InvalidBudget",
      message: `samplesPerRound must be a positive integer and round a non-negative integer (got ${c}, ${t})`,
    };
  }
  if (input.newSliceIds.length === 0) {
    return { ok: false, reason: "NoNewSlices", message: "a round needs at least one new slice" };
  }

  const byId = new Map(input.slices.map((s) => [s.id, s]));
  const newIds = [...new Set(input.newSliceIds)].sort(compareSliceIds);
  for (const id of newIds) {
    const s = byId.get(id);
    if (!s) return { ok: false, reason: "UnknownSlice", message: `new slice ${id} is not among the valid slices` };
  }
  const last = newIds[newIds.length - 1]!;
  const isNew = new Set(newIds);
  // The history the round may see: everything up to its newest slice, never later arrivals.
  const history = [...byId.values()]
    .filter((s) => compareSliceIds(s.id, last) <= 0)
    .sort((a, b) => compareSliceIds(a.id, b.id));
  for (const s of history) {
    if (s.shards.length === 0 || sliceSamples(s) <= 0) {
      return { ok: false, reason: "EmptySlice", message: `slice ${s.id} has no samples` };
    }
  }

  // Each source is a retained part of a slice: all of it, or for Exp/Equal buffers a shard prefix.
  // `pool` is the number of samples the round draws from uniformly, as in the paper's data pool.
  const parts: { slice: PlannerSlice; shards: PlannerShard[]; pool: number }[] = [];
  const whole = (s: PlannerSlice) => parts.push({ slice: s, shards: s.shards, pool: sliceSamples(s) });
  const traits = REPLAY[replay];
  switch (traits.data) {
    case "new":
      history.filter((s) => isNew.has(s.id)).forEach(whole);
      break;
    case "all":
      history.forEach(whole);
      break;
    case "buffer": {
      const targets = bufferTargets(replay, history.map(sliceSamples), input.bufferSamples);
      for (const [j, s] of history.entries()) {
        if (isNew.has(s.id)) whole(s);
        else if (targets[j]! > 0)
          parts.push({ slice: s, shards: shardPrefix(s.shards, targets[j]!), pool: targets[j]! });
      }
      break;
    }
  }

  const pool = parts.reduce((a, p) => a + p.pool, 0);
  const listed = parts.reduce((a, p) => a + sliceSamples(p), 0);
  const sources: MixtureSource[] = parts.map((p) => {
    const share = p.pool / pool;
    return {
      sliceId: p.slice.id,
      shards: p.shards.map((sh) => ({ uri: sh.uri, samples: sh.samples })),
      weight: tidy((share * listed) / sliceSamples(p)),
      expectedShare: Math.min(1, share),
      ...(p.slice.jsonCaptionField !== undefined ? { jsonCaptionField: p.slice.jsonCaptionField } : {}),
      ...(p.slice.heldOutFraction !== undefined ? { heldOutFraction: p.slice.heldOutFraction } : {}),
    };
  });
  const samples = traits.budgetRounds(t) * c;
  // The shards the sources list are what the strategy keeps: for data "all" that is every slice so far.
  return {
    ok: true,
    mixture: { sources, samples, warmStart: traits.warmStart, computeSamples: samples, storedSamples: listed },
  };
}

/**
 * The buffer of CumulativeExp/CumulativeEqual (Garg et al., ICLR 2024, section 4): samples of
 * each slice that are still retained once the newest slice arrives, indexed like `sizes` (the
 * slices in time order; the last is the newest step). At step s the buffer holds B_s samples
 * (bufferSamples, or the size of step s's data when 0) of the s earlier slices: Exp gives the one
 * k steps back B_s/2^k and the two oldest B_s/2^(s-1) each (D; D/2, D/2; D/2, D/4, D/4; ...), Equal
 * gives each B_s/s. A buffer only ever shrinks: data dropped at one step is gone, so a slice keeps
 * the least it was allotted at any step since it arrived (and never more than it has). The newest
 * slice is not part of the buffer: its entry is its full size.
 */
export function bufferTargets(replay: ReplayStrategy, sizes: readonly number[], bufferSamples: number): number[] {
  const share = REPLAY[replay].bufferShare;
  if (!share) throw new Error(`replay ${replay} keeps no buffer`);
  const kept = [...sizes];
  for (let s = 1; s < sizes.length; s++) {
    const b = bufferSamples > 0 ? bufferSamples : sizes[s]!;
    for (let j = 0; j < s; j++) {
      kept[j] = Math.min(kept[j]!, Math.floor(b * share(s - j, s)));
    }
  }
  return kept;
}

/** The shortest prefix of a slice's shards (manifest order) that holds at least `samples` samples. */
export function shardPrefix(shards: readonly PlannerShard[], samples: number): PlannerShard[] {
  let n = 0;
  for (const [i, sh] of shards.entries()) {
    n += sh.samples;
    if (n >= samples) return shards.slice(0, i + 1);
  }
  return [...shards];
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

export type MergeSetting = { mode: MergeMode; coefficient: number };
export type OptimizerSetting = Pick<
  ContinualClipRunSpec["strategy"]["optimizer"],
  "schedule" | "annealFraction" | "optimizerState"
>;

/**
 * The plan's merge for a round: spec.strategy.merge on warm-started rounds (the model merged with
 * is the one the round starts from), none on rounds trained from scratch or with mode None.
 */
export function roundMerge(merge: MergeSetting, warmStarted: boolean): Pick<RoundPlan, "merge"> {
  if (merge.mode === "None" || !warmStarted) return {};
  return { merge: { mode: merge.mode, coefficient: merge.coefficient } };
}

/**
 * The plan's schedule and optimizer-state fields. Only what differs from the trainer's defaults
 * (Cosine, a fresh AdamW) is written. The schedule is the spec's on warm-started rounds; a round
 * from scratch (round 0 without an initial checkpoint, Restart, Oracle) keeps the trainer's one
 * cosine cycle, the recipe the ablation in docs/tic-clip.md compared against.
 * Carry needs a warm-started round: a round from scratch has no moments to load, but it still
 * saves its own for the rounds after it.
 */
export function roundSchedule(
  o: OptimizerSetting,
  warmStarted: boolean,
): Pick<RoundPlan["optimizer"], "schedule" | "annealFraction" | "state"> {
  return {
    ...(warmStarted && o.schedule === "ConstantThenAnneal"
      ? { schedule: o.schedule, annealFraction: o.annealFraction }
      : {}),
    ...(o.optimizerState === "Carry" ? { state: o.optimizerState } : {}),
  };
}
