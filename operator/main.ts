// The operator's entry point: wiring only (config, clients, watches, queue, signals).
import { fileURLToPath } from "node:url";
import { loadConfig, type OperatorConfig } from "./config.ts";
import { EventRecorder, RunClient, loadKubeConfig } from "./kube/client.ts";
import { ResilientWatch } from "./kube/watch.ts";
import { WorkQueue } from "./controller/queue.ts";
import { createReconciler } from "./controller/reconcile.ts";
import { createLogger, errorMessage } from "./observability/log.ts";

export type RunningOperator = { stop: () => Promise<void>; queue: WorkQueue; watches: ResilientWatch[] };

export function startOperator(config: OperatorConfig): RunningOperator {
  const log = createLogger(config.logLevel);
  const kc = loadKubeConfig(config.kubeconfig);
  const runs = new RunClient(kc);
  const events = new EventRecorder(kc, config.identity);
  const reconcile = createReconciler({ runs, events, log });
  const queue = new WorkQueue(reconcile, {
    concurrency: config.concurrency,
    onError: (key, error, retryInMs) => log.warn("requeue after error", { key, error: errorMessage(error), retryInMs }),
  });
  const known = new Set<string>();
  const keyOf = (o: { metadata: { namespace: string; name: string } }) => `${o.metadata.namespace}/${o.metadata.name}`;

  const scopes = config.namespaces.length > 0 ? config.namespaces : [undefined];
  const watches = scopes.map(
    (namespace) =>
      new ResilientWatch(kc, {
        name: `continualclipruns/${namespace ?? "*"}`,
        path: runs.watchPath(namespace),
        list: () => runs.list(namespace),
        timeoutSeconds: config.watchTimeoutSeconds,
        log,
        onList: (items) => {
          for (const item of items) {
            known.add(keyOf(item));
            queue.add(keyOf(item));
          }
        },
        onEvent: ({ type, object }) => {
          const key = keyOf(object);
          if (type === "DELETED") {
            known.delete(key);
            queue.forget(key);
          } else {
            known.add(key);
          }
          queue.add(key);
        },
      }),
  );
  for (const w of watches) w.start();

  // Periodic resync: level-triggered safety net for anything a watch could have missed.
  const resync = setInterval(() => {
    for (const key of known) queue.add(key);
  }, config.resyncSeconds * 1000);
  resync.unref();

  log.info("operator started", { namespaces: config.namespaces, identity: config.identity });
  return {
    queue,
    watches,
    stop: async () => {
      clearInterval(resync);
      for (const w of watches) w.stop();
      queue.stop();
      await queue.idle();
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
  // The watches' sockets keep the process alive.
  setInterval(() => {}, 1 << 30);
}
