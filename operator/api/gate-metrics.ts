// The metric paths a gate may name, listed once: the admission pattern and its message
// (continual-clip-run.ts), the evaluator's metric names (evaluation/metrics.ts), the folding into
// paths (evaluation/tic.ts) and eval.json's shape (eval-result.ts) all derive from these lists.
// Paths: retrieval.<scope>.<metric> and zeroShot.<pack name>.<metric>.
import { DNS_LABEL_PATTERN } from "./common.ts";

/** What a retrieval metric is averaged over: the slices of each relation to the round, or its newest slice. */
export const RETRIEVAL_SCOPES = ["id", "backward", "forward", "latest"] as const;

/** Retrieval metrics computed once per pack, whatever spec.evaluation.retrieval.k says. */
export const RETRIEVAL_METRICS = ["meanRecallAt1"] as const;

/**
 * Retrieval metrics computed for each K (K=1 and every K of spec.evaluation.retrieval.k): the path
 * names one as <name><K>, e.g. imageToTextRecallAt5. Each name ends in "At": the CEL rule finds K
 * after the last "At".
 */
export const RETRIEVAL_METRICS_AT_K = [
  "imageToTextRecallAt",
  "textToImageRecallAt",
] as const satisfies readonly `${string}At`[];
export type RetrievalMetric = (typeof RETRIEVAL_METRICS)[number];
export type RetrievalMetricAtK = (typeof RETRIEVAL_METRICS_AT_K)[number];
/** The name of a per-K metric at one K: atK("imageToTextRecallAt", 5) is imageToTextRecallAt5. */
export const atK = (name: RetrievalMetricAtK, k: number) => `${name}${k}`;

/** Zero-shot accuracies: top<K> is right when the true class ranks among the first K. */
export const ZERO_SHOT_TOP_K = [1, 5] as const;
export const ZERO_SHOT_METRICS = ZERO_SHOT_TOP_K.map((k) => `top${k}` as const);
export type ZeroShotMetric = (typeof ZERO_SHOT_METRICS)[number];

const alternatives = (names: readonly string[]) => names.join("|");
const zeroShotName = DNS_LABEL_PATTERN.source.replace(/^\^|\$$/g, "");

export const GATE_METRIC_PATTERN = new RegExp(
  `^(retrieval\\.(${alternatives(RETRIEVAL_SCOPES)})\\.(${alternatives([
    ...RETRIEVAL_METRICS,
    ...RETRIEVAL_METRICS_AT_K.map((m) => `${m}[0-9]+`),
  ])})|zeroShot\\.${zeroShotName}\\.(${alternatives(ZERO_SHOT_METRICS)}))$`,
);

/** The admission message of a metric path that matches no gate metric. */
export const GATE_METRIC_FORMAT = `retrieval.<${alternatives(RETRIEVAL_SCOPES)}>.<${alternatives([
  ...RETRIEVAL_METRICS,
  ...RETRIEVAL_METRICS_AT_K.map((m) => `${m}K`),
])}> or zeroShot.<name>.<${alternatives(ZERO_SHOT_METRICS)}>`;

/** A CEL condition on the metric path `metric`: it names a per-K retrieval metric. */
export const celNamesMetricAtK = (metric: string) =>
  `(${RETRIEVAL_METRICS_AT_K.map((m) => `${metric}.contains('.${m}')`).join(" || ")})`;
