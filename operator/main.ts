// The operator's entry point: wiring only (config, clients, leader election, watches, queue, signals).
import type { Server } from "node:http";
import { fileURLToPath } from "node:url";
import { loadConfig, type OperatorConfig } from "./config.ts";
import { ChildClient, modelConfigMap, roundJob, type ModelConfigMap, type RoundJob } from "./kube/children.ts";
import { MODEL_CONFIGMAP_SELECTOR, ROUND_JOB_SELECTOR } from "./kube/objects.ts";
import { EventRecorder, RunClient, cachedRun, loadKubeConfig, type ListResult, type RawObject } from "./kube/client.ts";
import { LeaderElector } from "./kube/leader.ts";
import { ResilientWatch, WatchCache } from "./kube/watch.ts";
import { WorkQueue } from "./controller/queue.ts";
import { Reconciler, s3Storage } from "./controller/reconcile.ts";
import { API_VERSION, KIND } from "./api/continual-clip-run.ts";
import { createLogger, errorMessage, type Logger } from "./observability/log.ts";
import {
  createMetricsServer,
  forgetAllRuns,
  forgetRun,
  isLeader,
  notificationResponses,
  notificationsTotal,
  parseAddress,
  reconcileSeconds,
  reconcileTotal,
} from "./observability/metrics.ts";
import { createNotificationServer } from "./data/notifications.ts";
import type { Outcome } from "./controller/queue.ts";

export type RunningOperator = { stop: () => Promise<void> };

type KubeConfig = ReturnType<typeof loadKubeConfig>;

/** What the parts of a running operator share: its config, clients, the watch caches and the reconciler. */
type Wiring = {
  config: OperatorConfig;
  log: Logger;
  kc: KubeConfig;
  /** Namespaces watched (undefined: all). */
  scopes: (string | undefined)[];
  runs: RunClient;
  children: ChildClient;
  caches: { runs: WatchCache<string>; jobs: WatchCache<RoundJob>; configMaps: WatchCache<ModelConfigMap> };
  reconciler: Reconciler;
};

function wire(config: OperatorConfig): Wiring {
  const log = createLogger(config.logLevel);
  const kc = loadKubeConfig(config.kubeconfig);
  const scopes = config.namespaces.length > 0 ? config.namespaces : [undefined];
  // Reconciles read runs and their Jobs from what the watches deliver (docs/scale.md).
  const caches = {
    runs: new WatchCache<string>({ scopes, project: cachedRun }),
    jobs: new WatchCache<RoundJob>({ scopes, project: roundJob, indexBy: (j) => j.ownerUid }),
    configMaps: new WatchCache<ModelConfigMap>({ scopes, project: modelConfigMap }),
  };
  const runs = new RunClient(kc, caches.runs);
  const children = new ChildClient(kc, caches.jobs, caches.configMaps);
  const reconciler = new Reconciler({
    runs,
    children,
    events: new EventRecorder(kc, config.identity),
    log,
    evaluatorImage: config.evaluatorImage,
    storage: s3Storage({ timeoutMs: config.s3TimeoutSeconds * 1000 }),
    reconcileDeadlineMs: config.reconcileDeadlineSeconds * 1000,
    trainerArchitectures: config.trainerArchitectures,
    sliceUnreadableAfterMs: config.sliceUnreadableAfterMs,
    allowDefaultCredentials: config.allowDefaultCredentials,
    inProcessEvaluation: config.inProcessEvaluation,
    progressIntervalMs: config.progressIntervalMs,
    activeRoundResyncMs: config.progressIntervalMs,
  });
  return { config, log, kc, scopes, runs, children, caches, reconciler };
}

/** Settings that widen what a run's author can do are said out loud at start-up. */
function warnAboutTrust(config: OperatorConfig, log: Logger): void {
  if (config.allowDefaultCredentials) {
    // Not silent either: any run's author can then act with this operator's cloud identity.
    log.warn(
      "--allow-default-credentials: runs without spec.source.s3.credentialsSecretRef use this operator's own cloud identity",
    );
  }
  if (!config.evaluatorImage) {
    // Not silent: every round of a run with runner.mode Job is then scored in this process.
    log.warn(
      "no --evaluator-image: rounds are evaluated in the operator process (a worker thread), not in evaluation Jobs",
    );
  }
}

const keyOf = (o: { metadata: { namespace: string; name: string } }) => `${o.metadata.namespace}/${o.metadata.name}`;

/** Job changes wake the owning run: the controller ownerReference names it. */
function ownerKey(job: RawObject): string | undefined {
  const refs = (
    job.metadata as {
      ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; controller?: boolean }>;
    }
  ).ownerReferences;
  const owner = refs?.find((r) => r.controller && r.kind === KIND && r.apiVersion === API_VERSION);
  return owner ? `${job.metadata.namespace}/${owner.name}` : undefined;
}

/** The watches of runs: every run listed or changed is queued; `known` feeds the periodic resync. */
function runWatches(w: Wiring, queue: WorkQueue, known: Set<string>): ResilientWatch[] {
  return w.scopes.map(
    (namespace) =>
      new ResilientWatch(w.kc, {
        name: `continualclipruns/${namespace ?? "*"}`,
        path: w.runs.watchPath(namespace),
        list: () => w.runs.list(namespace),
        timeoutSeconds: w.config.watchTimeoutSeconds,
        log: w.log,
        onList: (items) => {
          w.caches.runs.replace(namespace, items);
          for (const item of items) {
            known.add(keyOf(item));
            queue.add(keyOf(item));
          }
        },
        onEvent: (event) => {
          const { type, object } = event;
          w.caches.runs.apply(event);
          const key = keyOf(object);
          if (type === "DELETED") {
            known.delete(key);
            queue.forget(key);
            w.reconciler.forget(key);
            forgetRun(object.metadata.namespace, object.metadata.name);
          } else known.add(key);
          queue.add(key);
        },
      }),
  );
}

/**
 * Children of runs, selected by label: a change to one wakes the run that owns it (a model
 * ConfigMap edited or deleted by someone is put back).
 */
function childWatches<T>(
  w: Wiring,
  queue: WorkQueue,
  child: { resource: string; base: string; selector: string; cache: WatchCache<T> },
  list: (namespace?: string) => Promise<ListResult>,
): ResilientWatch[] {
  const { resource, base, selector, cache } = child;
  return w.scopes.map(
    (namespace) =>
      new ResilientWatch(w.kc, {
        name: `${resource}/${namespace ?? "*"}`,
        path: `${base}${namespace ? `/namespaces/${namespace}` : ""}/${resource}?labelSelector=${encodeURIComponent(selector)}`,
        list: () => list(namespace),
        timeoutSeconds: w.config.watchTimeoutSeconds,
        log: w.log,
        onList: (items) => cache.replace(namespace, items),
        onEvent: (event) => {
          cache.apply(event);
          const key = ownerKey(event.object);
          if (key) queue.add(key);
        },
      }),
  );
}

/** The queue and every watch feeding it; built anew for each term of leadership. */
function buildControllers(w: Wiring, known: Set<string>): { queue: WorkQueue; watches: ResilientWatch[] } {
  const queue = new WorkQueue(
    async (key: string): Promise<Outcome> => {
      const end = reconcileSeconds.startTimer();
      const outcome = await w.reconciler.reconcile(key);
      end();
      reconcileTotal.inc({ outcome: outcome.kind });
      return outcome;
    },
    {
      concurrency: w.config.concurrency,
      onError: (key, error, retryInMs) =>
        w.log.warn("requeue after error", { key, error: errorMessage(error), retryInMs }),
    },
  );
  const { children, caches } = w;
  const jobs = { resource: "jobs", base: "/apis/batch/v1", selector: ROUND_JOB_SELECTOR, cache: caches.jobs };
  const configMaps = {
    resource: "configmaps",
    base: "/api/v1",
    selector: MODEL_CONFIGMAP_SELECTOR,
    cache: caches.configMaps,
  };
  const watches = [
    ...runWatches(w, queue, known),
    ...childWatches(w, queue, jobs, (ns) => children.listRoundJobs(ns)),
    ...childWatches(w, queue, configMaps, (ns) => children.listModelConfigMaps(ns)),
  ];
  return { queue, watches };
}

/**
 * The metrics and health server, and the S3 notifications endpoint when configured. `ready`: this
 * replica leads with its controllers started, or stands by; `queue`: where notified runs go.
 */
function startServers(w: Wiring, ready: () => boolean, queue: () => WorkQueue | undefined): Server[] {
  const { config, log, reconciler } = w;
  const metrics = createMetricsServer(ready, () => reconciler.stuck().length === 0);
  const m = parseAddress(config.metricsAddress);
  metrics.listen(m.port, m.host, () => log.info("metrics listening", { address: metrics.address() }));
  if (!config.notificationsAddress || !config.notificationToken) return [metrics];
  // Each S3 event re-checks the matching runs' slice folders now instead of at the next poll.
  const n = createNotificationServer({
    token: config.notificationToken,
    accepting: () => queue() !== undefined,
    onObjectEvent: (e) => {
      const keys = reconciler.notify(e.bucket, e.key);
      notificationsTotal.inc({ matched: keys.length > 0 ? "true" : "false" });
      for (const key of keys) queue()?.add(key);
    },
  });
  n.on("request", (_req, res) => res.once("finish", () => notificationResponses.inc({ code: String(res.statusCode) })));
  const a = parseAddress(config.notificationsAddress);
  n.listen(a.port, a.host, () => log.info("S3 notifications listening", { address: n.address() }));
  return [metrics, n];
}

export function startOperator(config: OperatorConfig): RunningOperator {
  const w = wire(config);
  const { log, kc, caches, reconciler } = w;
  warnAboutTrust(config, log);
  // Controllers (queue, watches, resync) live only while this replica leads; leadership can be
  // lost (the API server unreachable past the renew deadline) and won again, so they are rebuilt.
  const known = new Set<string>();
  let controllers: ReturnType<typeof buildControllers> | undefined;
  let resync: NodeJS.Timeout | undefined;
  let started = false;
  const servers = startServers(
    w,
    () => started || (elector !== undefined && !elector.isLeader),
    () => controllers?.queue,
  );
  const startControllers = () => {
    if (controllers) return;
    const c = buildControllers(w, known);
    controllers = c;
    started = true;
    isLeader.set(1);
    for (const watch of c.watches) watch.start();
    // Periodic resync: level-triggered safety net for anything a watch could have missed.
    resync = setInterval(() => {
      for (const key of known) c.queue.add(key);
    }, config.resyncSeconds * 1000);
    resync.unref();
  };
  const stopControllers = async () => {
    const c = controllers;
    controllers = undefined;
    started = false;
    isLeader.set(0);
    // A standby's per-run gauges would go stale and keep alerts firing after the new leader clears them.
    forgetAllRuns();
    clearInterval(resync);
    if (!c) return;
    for (const watch of c.watches) watch.stop();
    // The next term lists again; until then reads go to the API server.
    caches.runs.reset();
    caches.jobs.reset();
    caches.configMaps.reset();
    c.queue.stop();
    reconciler.abortInFlight();
    await c.queue.idle();
  };

  const elector = config.leaderElection
    ? new LeaderElector(kc, {
        namespace: config.leaseNamespace,
        name: config.leaseName,
        identity: config.identity,
        log,
        onStartedLeading: startControllers,
        // Stop acting before the lease can expire for others; keep campaigning to lead again.
        onStoppedLeading: () => void stopControllers(),
      })
    : undefined;
  if (elector) elector.start();
  else startControllers();

  log.info("operator started", {
    namespaces: config.namespaces,
    identity: config.identity,
    leaderElection: config.leaderElection,
  });
  return {
    stop: async () => {
      await stopControllers();
      await elector?.stop();
      for (const srv of servers) srv.close();
      log.info("operator stopped");
    },
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  let op: RunningOperator;
  try {
    op = startOperator(loadConfig(process.argv.slice(2), process.env));
  } catch (err) {
    console.error(errorMessage(err));
    process.exit(2);
  }
  const shutdown = () => {
    void op.stop().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 10_000).unref();
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
  setInterval(() => {}, 1 << 30); // keep the event loop alive between watch reconnects
}
