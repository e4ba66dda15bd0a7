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
  buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
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
export const isLeader = new Gauge({ name: "ticclip_leader", help: "1 while this replica holds the leader lease.", registers: [registry] });
export const notificationsTotal = new Counter({
  name: "ticclip_s3_notifications_total",
  help: "S3 event notifications received, by whether they matched a run.",
  labelNames: ["matched"] as const,
  registers: [registry],
});

/** Records a run's status in the gauges (called after each reconcile that read the run). */
export function observeRunStatus(namespace: string, run: string, status: { rounds?: Array<{ phase: string }>; slices?: { discovered: number }; compute?: { samplesSeen: number; savingVsOracle: number } } | undefined): void {
  const counts = new Map<string, number>();
  for (const r of status?.rounds ?? []) counts.set(r.phase, (counts.get(r.phase) ?? 0) + 1);
  roundsByPhase.remove({ namespace, run });
  for (const [phase, n] of counts) roundsByPhase.set({ namespace, run, phase }, n);
  if (status?.slices) slicesDiscovered.set({ namespace, run }, status.slices.discovered);
  if (status?.compute) {
    samplesSeen.set({ namespace, run }, status.compute.samplesSeen);
    savingVsOracle.set({ namespace, run }, status.compute.savingVsOracle);
  }
}

export function forgetRun(namespace: string, run: string): void {
  for (const g of [slicesDiscovered, samplesSeen, savingVsOracle]) g.remove({ namespace, run });
  roundsByPhase.remove({ namespace, run });
}

/** /metrics, /healthz (process alive) and /readyz (watches started or standing by as a standby). */
export function createMetricsServer(isReady: () => boolean): http.Server {
  return http.createServer(async (req, res) => {
    if (req.url === "/metrics") {
      res.writeHead(200, { "content-type": registry.contentType });
      res.end(await registry.metrics());
    } else if (req.url === "/healthz") {
      res.writeHead(200).end("ok\n");
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
