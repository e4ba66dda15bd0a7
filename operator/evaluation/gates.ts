// Gates: a pure decision from a round's metrics (and the promoted model's, for maxRegression) to
// pass/fail per gate, each with the observed value, the threshold it was held to and why.
import type { z } from "zod";
import type { gateSpec } from "../api/continual-clip-run.ts";
import type { gateResult } from "../api/round-documents.ts";
import type { RoundMetrics } from "./tic.ts";

export type Gate = z.infer<typeof gateSpec>;
export type GateResult = z.infer<typeof gateResult>;
export type GateDecision = { passed: boolean; results: GateResult[]; message: string };

/** The promoted model's metrics; best measured on the same packs as the candidate (see evaluate.ts). */
export type Baseline = {
  version: number;
  metrics: Record<string, number>;
  notApplicable?: Record<string, string>;
  rescoredOnSamePacks: boolean;
};

const COMPARE: Record<NonNullable<Gate["op"]>, (a: number, b: number) => boolean> = {
  ">=": (a, b) => a >= b,
  ">": (a, b) => a > b,
  "<=": (a, b) => a <= b,
  "<": (a, b) => a < b,
};

const fmt = (x: number) => (Math.round(x * 10000) / 10000).toString();

function notApplicableReason(metric: string, na: Record<string, string> | undefined): string | undefined {
  for (const [prefix, why] of Object.entries(na ?? {})) if (metric.startsWith(prefix + ".")) return why;
  return undefined;
}

export function decideGate(gate: Gate, round: RoundMetrics, baseline: Baseline | undefined): GateResult {
  const { metric } = gate;
  const na = notApplicableReason(metric, round.notApplicable);
  if (na !== undefined)
    return { metric, observed: null, threshold: null, passed: true, message: `not applicable: ${na}` };
  const observed = round.metrics[metric];
  if (observed === undefined || !Number.isFinite(observed)) {
    const known = Object.keys(round.metrics).filter((k) => k.split(".")[0] === metric.split(".")[0]);
    return {
      metric,
      observed: null,
      threshold: null,
      passed: false,
      message: `metric ${metric} was not computed for this round${known.length ? ` (computed: ${known.slice(0, 12).join(", ")})` : ""}`,
    };
  }
  const parts: string[] = [];
  let passed = true;
  let threshold: number | null = null;
  if (gate.op !== undefined && gate.value !== undefined) {
    const ok = COMPARE[gate.op](observed, gate.value);
    passed &&= ok;
    threshold = gate.value;
    parts.push(`${fmt(observed)} ${ok ? "" : "not "}${gate.op} ${fmt(gate.value)}`);
  }
  if (gate.maxRegression !== undefined) {
    const base = baseline?.metrics[metric];
    if (baseline === undefined) {
      parts.push("no promoted model to regress from");
    } else if (base === undefined) {
      const why = notApplicableReason(metric, baseline.notApplicable);
      parts.push(`promoted v${baseline.version} has no ${metric}${why ? ` (${why})` : ""}: regression not checked`);
    } else {
      const floor = base - gate.maxRegression;
      const ok = observed >= floor;
      passed &&= ok;
      // Report the binding threshold when both kinds apply.
      threshold = threshold === null ? floor : Math.max(threshold, floor);
      parts.push(
        `${fmt(observed)} ${ok ? ">=" : "<"} promoted v${baseline.version}'s ${fmt(base)} - ${fmt(gate.maxRegression)}${baseline.rescoredOnSamePacks ? "" : " (promoted model's metrics from its own round, not rescored on this round's packs)"}`,
      );
    }
  }
  return { metric, observed, threshold, passed, message: parts.join("; ") };
}

export function decideGates(gates: readonly Gate[], round: RoundMetrics, baseline: Baseline | undefined): GateDecision {
  const results = gates.map((g) => decideGate(g, round, baseline));
  const failed = results.filter((r) => !r.passed);
  return {
    passed: failed.length === 0,
    results,
    message:
      failed.length === 0
        ? `all ${results.length} gates passed`
        : `failed gates: ${failed.map((f) => `${f.metric} (${f.message})`).join("; ")}`,
  };
}
