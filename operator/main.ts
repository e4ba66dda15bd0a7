// The operator's entry point: wiring only (config, clients, leader election, watches, queue, signals).
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
import { createLogger, errorMessage } from "./observability/log.ts";
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

export function startOperator(config: OperatorConfig): RunningOperator {
  const log = createLogger(config.logLevel);
  const kc = loadKubeConfig(config.kubeconfig);
  const scopes = config.namespaces.length > 0 ? config.namespaces : [undefined];
  // Reconciles read runs and their Jobs from what the watches below deliver (docs/scale.md).
  const runCache = new WatchCache<string>({ scopes, project: cachedRun });
  const jobCache = new WatchCache<RoundJob>({ scopes, project: roundJob, indexBy: (j) => j.ownerUid });
  const runs = new RunClient(kc, runCache);
  const configMapCache = new WatchCache<ModelConfigMap>({ scopes, project: modelConfigMap });
  const children = new ChildClient(kc, jobCache, configMapCache);
  const events = new EventRecorder(kc, config.identity);
  const reconciler = new Reconciler({
    runs,
    children,
    events,
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
  const timedReconcile = async (key: string): Promise<Outcome> => {
    const end = reconcileSeconds.startTimer();
    const outcome = await reconciler.reconcile(key);
    end();
    reconcileTotal.inc({ outcome: outcome.kind });
    return outcome;
  };
  // Controllers (queue, watches, resync) live only while this replica leads; leadership can be
  // lost (the API server unreachable past the renew deadline) and won again, so they are rebuilt.
  const known = new Set<string>();
  const keyOf = (o: { metadata: { namespace: string; name: string } }) => `${o.metadata.namespace}/${o.metadata.name}`;
  // Job changes wake the owning run: the controller ownerReference names it.
  const ownerKey = (job: RawObject) => {
    const refs = (
      job.metadata as {
        ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; controller?: boolean }>;
      }
    ).ownerReferences;
    const owner = refs?.find((r) => r.controller && r.kind === KIND && r.apiVersion === API_VERSION);
    return owner ? `${job.metadata.namespace}/${owner.name}` : undefined;
  };
  const buildControllers = () => {
    const queue = new WorkQueue(timedReconcile, {
      concurrency: config.concurrency,
      onError: (key, error, retryInMs) =>
        log.warn("requeue after error", { key, error: errorMessage(error), retryInMs }),
    });
    const runWatches = scopes.map(
      (namespace) =>
        new ResilientWatch(kc, {
          name: `continualclipruns/${namespace ?? "*"}`,
          path: runs.watchPath(namespace),
          list: () => runs.list(namespace),
          timeoutSeconds: config.watchTimeoutSeconds,
          log,
          onList: (items) => {
            runCache.replace(namespace, items);
            for (const item of items) {
              known.add(keyOf(item));
              queue.add(keyOf(item));
            }
          },
          onEvent: (event) => {
            const { type, object } = event;
            runCache.apply(event);
            const key = keyOf(object);
            if (type === "DELETED") {
              known.delete(key);
              queue.forget(key);
              reconciler.forget(key);
              forgetRun(object.metadata.namespace, object.metadata.name);
            } else known.add(key);
            queue.add(key);
          },
        }),
    );
    // Children of runs, selected by label: a change to one wakes the run that owns it (a model
    // ConfigMap edited or deleted by someone is put back).
    const childWatches = <T>(
      resource: string,
      base: string,
      selector: string,
      list: (namespace?: string) => Promise<ListResult>,
      cache: WatchCache<T>,
    ) =>
      scopes.map(
        (namespace) =>
          new ResilientWatch(kc, {
            name: `${resource}/${namespace ?? "*"}`,
            path: `${base}${namespace ? `/namespaces/${namespace}` : ""}/${resource}?labelSelector=${encodeURIComponent(selector)}`,
            list: () => list(namespace),
            timeoutSeconds: config.watchTimeoutSeconds,
            log,
            onList: (items) => cache.replace(namespace, items),
            onEvent: (event) => {
              cache.apply(event);
              const key = ownerKey(event.object);
              if (key) queue.add(key);
            },
          }),
      );
    const jobWatches = childWatches(
      "jobs",
      "/apis/batch/v1",
      ROUND_JOB_SELECTOR,
      (ns) => children.listRoundJobs(ns),
      jobCache,
    );
    const configMapWatches = childWatches(
      "configmaps",
      "/api/v1",
      MODEL_CONFIGMAP_SELECTOR,
      (ns) => children.listModelConfigMaps(ns),
      configMapCache,
    );
    return { queue, watches: [...runWatches, ...jobWatches, ...configMapWatches] };
  };
  let controllers: ReturnType<typeof buildControllers> | undefined;

  let resync: NodeJS.Timeout | undefined;
  let started = false;
  const servers: import("node:http").Server[] = [];
  const metrics = createMetricsServer(
    () => started || (elector !== undefined && !elector.isLeader),
    () => reconciler.stuck().length === 0,
  );
  const m = parseAddress(config.metricsAddress);
  metrics.listen(m.port, m.host, () => log.info("metrics listening", { address: metrics.address() }));
  servers.push(metrics);
  if (config.notificationsAddress && config.notificationToken) {
    // Each S3 event re-checks the matching runs' slice folders now instead of at the next poll.
    const n = createNotificationServer({
      token: config.notificationToken,
      accepting: () => controllers !== undefined,
      onObjectEvent: (e) => {
        const keys = reconciler.notify(e.bucket, e.key);
        notificationsTotal.inc({ matched: keys.length > 0 ? "true" : "false" });
        for (const key of keys) controllers?.queue.add(key);
      },
    });
    n.on("request", (_req, res) =>
      res.once("finish", () => notificationResponses.inc({ code: String(res.statusCode) })),
    );
    const a = parseAddress(config.notificationsAddress);
    n.listen(a.port, a.host, () => log.info("S3 notifications listening", { address: n.address() }));
    servers.push(n);
  }
  const startControllers = () => {
    if (controllers) return;
    const c = buildControllers();
    controllers = c;
    started = true;
    isLeader.set(1);
    for (const w of c.watches) w.start();
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
    for (const w of c.watches) w.stop();
    // The next term lists again; until then reads go to the API server.
    runCache.reset();
    jobCache.reset();
    configMapCache.reset();
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
