// Prometheus metrics (prom-client) and the health endpoints, served on one small HTTP server.
import http from "node:http";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: "ticclip_operator_" });

export const reconcileTotal = new Counter({
  name: "ticclip_reconcile_total",
  help: "Reconciles by outcome (done, requeueAfter, retry, stalled).",
  labelNames: ["outcome"] as const,
  registers: [registry],
});
export const reconcileSeconds = new Histogram({
  name: "ticclip_reconcile_duration_seconds",
  help: "Duration of one reconcile.",
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});
export const s3RequestsTotal = new Counter({
  name: "ticclip_s3_requests_total",
  help: "HTTP requests sent to S3 by operation (ListObjectsV2, GetObject, ...), retries included.",
  labelNames: ["operation"] as const,
  registers: [registry],
});
export const kubeRequestsTotal = new Counter({
  name: "ticclip_kube_requests_total",
  help: "Requests sent to the Kubernetes API by verb, resource and subresource (as kube-apiserver names them), watches included.",
  labelNames: ["verb", "resource", "subresource"] as const,
  registers: [registry],
});
export const gitRequestsTotal = new Counter({
  name: "ticclip_git_requests_total",
  help: "HTTP requests sent to Git servers (spec.promotion.git) by operation (fetch, push).",
  labelNames: ["operation"] as const,
  registers: [registry],
});
export const roundsByPhase = new Gauge({
  name: "ticclip_rounds",
  help: "Rounds of each run by phase (from status.rounds).",
  labelNames: ["namespace", "run", "phase"] as const,
  registers: [registry],
});
export const slicesDiscovered = new Gauge({
  name: "ticclip_slices_discovered",
  help: "Valid slices discovered per run.",
  labelNames: ["namespace", "run"] as const,
  registers: [registry],
});
export const samplesSeen = new Gauge({
  name: "ticclip_samples_seen",
  help: "Samples trained on by a run's trained rounds (status.compute.samplesSeen).",
  labelNames: ["namespace", "run"] as const,
  registers: [registry],
});
export const savingVsOracle = new Gauge({
  name: "ticclip_saving_vs_oracle_ratio",
  help: "Oracle-equivalent samples divided by samples seen (TiC-CLIP's compute saving).",
  labelNames: ["namespace", "run"] as const,
  registers: [registry],
});
export const isLeader = new Gauge({
  name: "ticclip_leader",
  help: "1 while this replica holds the leader lease.",
  registers: [registry],
});
export const notificationsTotal = new Counter({
  name: "ticclip_s3_notifications_total",
  help: "S3 event notifications received, by whether they matched a run.",
  labelNames: ["matched"] as const,
  registers: [registry],
});

export const runCondition = new Gauge({
  name: "ticclip_run_condition",
  help: "1 while the run's condition (Ready, Stalled, Degraded, Progressing) is True, else 0; its reason as a label.",
  labelNames: ["namespace", "run", "condition", "reason"] as const,
  registers: [registry],
});
export const latestRoundMetric = new Gauge({
  name: "ticclip_latest_round_metric",
  help: "Evaluation metrics (TiC matrix summaries, gate metrics) of the run's latest evaluated round.",
  labelNames: ["namespace", "run", "metric"] as const,
  registers: [registry],
});
export const latestEvaluatedRound = new Gauge({
  name: "ticclip_latest_evaluated_round",
  help: "Index of the run's latest round with evaluation metrics.",
  labelNames: ["namespace", "run"] as const,
  registers: [registry],
});
export const promotedVersion = new Gauge({
  name: "ticclip_promoted_version",
  help: "Version the run's alias points at (status.promoted.version).",
  labelNames: ["namespace", "run"] as const,
  registers: [registry],
});
export const rejectedSincePromotion = new Gauge({
  name: "ticclip_rounds_rejected_since_promotion",
  help: "Rounds rejected by their gates since the run's latest promoted round (within status.rounds).",
  labelNames: ["namespace", "run"] as const,
  registers: [registry],
});
export const slicePollSuccess = new Gauge({
  name: "ticclip_slice_poll_last_success_timestamp_seconds",
  help: "When the run's last S3 discovery pass completed without errors.",
  labelNames: ["namespace", "run"] as const,
  registers: [registry],
});
export const slicePollInterval = new Gauge({
  name: "ticclip_slice_poll_interval_seconds",
  help: "The run's spec.source.pollInterval.",
  labelNames: ["namespace", "run"] as const,
  registers: [registry],
});
export const sliceToJobSeconds = new Histogram({
  name: "ticclip_slice_to_job_seconds",
  help: "From the discovery pass that first saw a round's newest slice valid to the creation of its trainer Job.",
  buckets: [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900],
  registers: [registry],
});
export const notificationResponses = new Counter({
  name: "ticclip_s3_notification_responses_total",
  help: "Responses of the S3 notification endpoint by HTTP status code (non-200: rejected events).",
  labelNames: ["code"] as const,
  registers: [registry],
});

export const roundProgressRatio = new Gauge({
  name: "ticclip_round_progress_ratio",
  help: "Samples done of the training round's budget, 0 to 1 (status.currentRound.progress, from progress.json).",
  labelNames: ["namespace", "run"] as const,
  registers: [registry],
});
export const roundSamplesPerSecond = new Gauge({
  name: "ticclip_round_samples_per_second",
  help: "The training round's throughput over the trainer's last few minutes of steps.",
  labelNames: ["namespace", "run"] as const,
  registers: [registry],
});
export const roundLoss = new Gauge({
  name: "ticclip_round_loss",
  help: "The training round's smoothed loss, as the trainer last reported it.",
  labelNames: ["namespace", "run"] as const,
  registers: [registry],
});

type RunStatusView = {
  currentRound?: {
    progress?: { samplesDone?: number; samplesTotal?: number; samplesPerSecond?: number; loss?: number };
  };
  rounds?: Array<{ index: number; phase: string; metrics?: Record<string, number> | undefined }>;
  slices?: { discovered: number };
  compute?: { samplesSeen: number; savingVsOracle: number };
  conditions?: Array<{ type: string; status: string; reason: string }>;
  promoted?: { version: number; round: number };
};

// Series whose label values change between observations (phase, reason, metric name): prom-client
// removes a series only by its full label set, so each run remembers what it set last time.
type Series = { gauge: Gauge<string>; labels: Record<string, string> };
const seriesKey = (s: Series) => `${(s.gauge as unknown as { name: string }).name}\n${JSON.stringify(s.labels)}`;
const runSeries = new Map<string, Series[]>();

function replaceRunSeries(namespace: string, run: string, next: Array<Series & { value: number }>): void {
  const key = `${namespace}/${run}`;
  const keep = new Set(next.map(seriesKey));
  for (const s of runSeries.get(key) ?? []) {
    if (!keep.has(seriesKey(s))) s.gauge.remove(s.labels);
  }
  for (const s of next) s.gauge.set(s.labels, s.value);
  runSeries.set(
    key,
    next.map(({ gauge, labels }) => ({ gauge, labels })),
  );
}

/** Records a run's status in the gauges (called after each reconcile that read the run). */
export function observeRunStatus(namespace: string, run: string, status: RunStatusView | undefined): void {
  const counts = new Map<string, number>();
  for (const r of status?.rounds ?? []) counts.set(r.phase, (counts.get(r.phase) ?? 0) + 1);
  const series: Array<Series & { value: number }> = [];
  for (const [phase, n] of counts) series.push({ gauge: roundsByPhase, labels: { namespace, run, phase }, value: n });
  for (const c of status?.conditions ?? []) {
    const labels = { namespace, run, condition: c.type, reason: c.reason };
    series.push({ gauge: runCondition, labels, value: c.status === "True" ? 1 : 0 });
  }
  const latest = [...(status?.rounds ?? [])].reverse().find((r) => r.metrics && Object.keys(r.metrics).length > 0);
  for (const [metric, value] of Object.entries(latest?.metrics ?? {})) {
    series.push({ gauge: latestRoundMetric, labels: { namespace, run, metric }, value });
  }
  if (latest) series.push({ gauge: latestEvaluatedRound, labels: { namespace, run }, value: latest.index });
  // Only while a round trains (or its progress is still shown): an idle run has none of these series.
  const p = status?.currentRound?.progress;
  if (p?.samplesTotal !== undefined && p.samplesDone !== undefined)
    series.push({ gauge: roundProgressRatio, labels: { namespace, run }, value: p.samplesDone / p.samplesTotal });
  if (p?.samplesPerSecond !== undefined)
    series.push({ gauge: roundSamplesPerSecond, labels: { namespace, run }, value: p.samplesPerSecond });
  if (p?.loss !== undefined) series.push({ gauge: roundLoss, labels: { namespace, run }, value: p.loss });
  if (status?.promoted) {
    series.push({ gauge: promotedVersion, labels: { namespace, run }, value: status.promoted.version });
  }
  const sincePromoted = (status?.rounds ?? []).filter((r) => r.index > (status?.promoted?.round ?? -1));
  const rejected = sincePromoted.filter((r) => r.phase === "Rejected").length;
  series.push({ gauge: rejectedSincePromotion, labels: { namespace, run }, value: rejected });
  replaceRunSeries(namespace, run, series);
  if (status?.slices) slicesDiscovered.set({ namespace, run }, status.slices.discovered);
  if (status?.compute) {
    samplesSeen.set({ namespace, run }, status.compute.samplesSeen);
    savingVsOracle.set({ namespace, run }, status.compute.savingVsOracle);
  }
}

/** A discovery pass of the run finished without S3 errors. */
export function observeSlicePoll(namespace: string, run: string, at: Date, pollIntervalMs: number): void {
  slicePollSuccess.set({ namespace, run }, at.getTime() / 1000);
  slicePollInterval.set({ namespace, run }, pollIntervalMs / 1000);
}

// Per-run gauges with fixed labels {namespace, run}.
const RUN_GAUGES = [slicesDiscovered, samplesSeen, savingVsOracle, slicePollSuccess, slicePollInterval];

/** Drops every per-run series (this replica stopped reconciling). */
export function forgetAllRuns(): void {
  for (const g of RUN_GAUGES) g.reset();
  for (const key of [...runSeries.keys()]) {
    const [namespace, run] = key.split("/") as [string, string];
    replaceRunSeries(namespace, run, []);
  }
  runSeries.clear();
}

export function forgetRun(namespace: string, run: string): void {
  for (const g of RUN_GAUGES) g.remove({ namespace, run });
  replaceRunSeries(namespace, run, []);
  runSeries.delete(`${namespace}/${run}`);
}

/** /metrics, /healthz (process alive) and /readyz (watches started or standing by as a standby). */
/** isHealthy false (e.g. a reconcile stuck past its deadline) fails /healthz, so the kubelet restarts the pod. */
export function createMetricsServer(isReady: () => boolean, isHealthy: () => boolean = () => true): http.Server {
  return http.createServer(async (req, res) => {
    if (req.url === "/metrics") {
      res.writeHead(200, { "content-type": registry.contentType });
      res.end(await registry.metrics());
    } else if (req.url === "/healthz") {
      const ok = isHealthy();
      res.writeHead(ok ? 200 : 503).end(ok ? "ok\n" : "a reconcile is stuck past its deadline\n");
    } else if (req.url === "/readyz") {
      const ok = isReady();
      res.writeHead(ok ? 200 : 503).end(ok ? "ok\n" : "not ready\n");
    } else {
      res.writeHead(404).end("not found\n");
    }
  });
}

/** "host:port" or ":port" -> listen arguments. */
export function parseAddress(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(":");
  const host = addr.slice(0, i) || "0.0.0.0";
  const port = Number(addr.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad address ${addr}`);
  return { host, port };
}
