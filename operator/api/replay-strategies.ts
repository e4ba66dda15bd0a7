// The TiC-CLIP replay strategies (Garg et al., ICLR 2024), one row each: the planner
// (data/planner.ts), compute accounting (data/compute.ts), the report (report/html.ts) and the CEL
// rules of spec.strategy (continual-clip-run.ts) read a strategy's traits here, never its name.
// Adding a strategy: a name in REPLAY_STRATEGIES and its row (TypeScript refuses a missing one).

export const REPLAY_STRATEGIES = [
  "Sequential",
  "CumulativeAll",
  "CumulativeExp",
  "CumulativeEqual",
  "Restart",
  "Oracle",
] as const;
export type ReplayStrategy = (typeof REPLAY_STRATEGIES)[number];

export type ReplayTraits = {
  /** Whether a round initialises from the previous checkpoint (false: from scratch). */
  warmStart: boolean;
  /**
   * The data parts a round draws from uniformly: the new slices only, every slice so far, or the
   * new slices plus a bounded buffer of each past slice (`bufferShare`).
   */
  data: "new" | "all" | "buffer";
  /**
   * With data "buffer": the fraction of the step-s buffer B_s kept for the slice k steps back
   * (1 <= k <= s); a slice keeps the least it was allotted at any step (planner.ts bufferTargets).
   */
  bufferShare?: (k: number, s: number) => number;
  /** Rounds of budget C round t trains on: its samples are C x this (Oracle retrains on all t+1). */
  budgetRounds: (t: number) => number;
  /** Colour of the strategy in the TiC report (report/html.ts). */
  colour: string;
};

export const REPLAY: Record<ReplayStrategy, ReplayTraits> = {
  Sequential: { warmStart: true, data: "new", budgetRounds: () => 1, colour: "#d62728" },
  CumulativeAll: { warmStart: true, data: "all", budgetRounds: () => 1, colour: "#1f77b4" },
  // D; D/2, D/2; D/2, D/4, D/4; ...: halves per step back, the two oldest share the last halving.
  CumulativeExp: {
    warmStart: true,
    data: "buffer",
    bufferShare: (k, s) => 2 ** -Math.min(k, s - 1),
    budgetRounds: () => 1,
    colour: "#2ca02c",
  },
  CumulativeEqual: {
    warmStart: true,
    data: "buffer",
    bufferShare: (_k, s) => 1 / s,
    budgetRounds: () => 1,
    colour: "#9467bd",
  },
  Restart: { warmStart: false, data: "all", budgetRounds: () => 1, colour: "#ff7f0e" },
  Oracle: { warmStart: false, data: "all", budgetRounds: (t) => t + 1, colour: "#444444" },
};

/** The strategies whose rows satisfy `has`, in REPLAY_STRATEGIES order. */
export const strategiesWhere = (has: (t: ReplayTraits) => boolean): ReplayStrategy[] =>
  REPLAY_STRATEGIES.filter((s) => has(REPLAY[s]));

/** A CEL list literal of strategy names: ['A', 'B']. */
export const celList = (names: readonly string[]) => `[${names.map((n) => `'${n}'`).join(", ")}]`;

/** "A", "A or B", "A, B or C" (conjunction "and" where all apply). */
export const nameList = (names: readonly string[], conjunction: "or" | "and") =>
  names.length < 2 ? names.join("") : `${names.slice(0, -1).join(", ")} ${conjunction} ${names.at(-1)}`;
