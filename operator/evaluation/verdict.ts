// A round's verdict from its eval.json and the run's gates: what the reconciler writes into
// status.rounds[] and whether the round may be promoted. Pure.
import type { z } from "zod";
import type { EvalResult } from "../api/eval-result.ts";
import type { roundVerdict } from "../api/round-documents.ts";
import { decideGates, type Baseline, type Gate } from "./gates.ts";

export type RoundVerdict = z.infer<typeof roundVerdict>;

/**
 * `promoted` is status.promoted; it is used for maxRegression only when eval.json has no rescored
 * baseline (the gate message then says the comparison is across different packs).
 */
export function judgeRound(
  ev: EvalResult,
  gates: readonly Gate[],
  promoted?: { version: number; metrics?: Record<string, number> | undefined },
): RoundVerdict {
  if (ev.status === "Failed") return { passed: false, reason: ev.reason, message: `evaluation failed: ${ev.message}` };
  const baseline: Baseline | undefined = ev.baseline
    ? {
        version: ev.baseline.version,
        metrics: ev.baseline.metrics,
        notApplicable: ev.baseline.notApplicable,
        rescoredOnSamePacks: true,
      }
    : promoted
      ? { version: promoted.version, metrics: promoted.metrics ?? {}, rescoredOnSamePacks: false }
      : undefined;
  const d = decideGates(gates, { metrics: ev.candidate.metrics, notApplicable: ev.candidate.notApplicable }, baseline);
  const metrics = statusMetrics(ev, gates);
  return d.passed
    ? { passed: true, metrics, gates: d.results, message: d.message }
    : { passed: false, reason: "GatesFailed", message: d.message, metrics, gates: d.results };
}

/**
 * The metrics kept in status.rounds[].metrics (eval.json has them all): meanRecallAt1 per relation,
 * zero-shot top1/top5, every metric a gate names, and the TiC matrix summary (tic.<id|backward|forward>).
 */
export function statusMetrics(
  ev: EvalResult & { status: "Succeeded" },
  gates: readonly Gate[] = [],
): Record<string, number> {
  const named = new Set(gates.map((g) => g.metric));
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(ev.candidate.metrics)) {
    if (k.endsWith(".meanRecallAt1") || k.startsWith("zeroShot.") || named.has(k)) out[k] = v;
  }
  const s = ev.matrix.summary;
  if (s.id !== null) out["tic.id.meanRecallAt1"] = s.id;
  if (s.backward !== null) out["tic.backward.meanRecallAt1"] = s.backward;
  if (s.forward !== null) out["tic.forward.meanRecallAt1"] = s.forward;
  return out;
}
