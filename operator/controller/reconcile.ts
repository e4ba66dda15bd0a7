// One reconcile of one run: observe -> decide (pure) -> act. The only place errors become outcomes.
import type { EventRecorder, RunClient } from "../kube/client.ts";
import type { Logger } from "../observability/log.ts";
import { errorMessage } from "../observability/log.ts";
import { decideStatus } from "./decide.ts";
import type { Outcome } from "./queue.ts";

export type ReconcilerDeps = {
  runs: RunClient;
  events: EventRecorder;
  log: Logger;
  now?: () => Date;
};

export function splitKey(key: string): { namespace: string; name: string } {
  const [namespace, name] = key.split("/");
  if (!namespace || !name) throw new Error(`bad key ${key}`);
  return { namespace, name };
}

export function createReconciler(deps: ReconcilerDeps): (key: string) => Promise<Outcome> {
  const now = deps.now ?? (() => new Date());
  return async (key) => {
    const { namespace, name } = splitKey(key);
    const log = deps.log.child({ namespace, name });
    try {
      const run = await deps.runs.get(namespace, name);
      if (!run || run.metadata.deletionTimestamp) return { kind: "done" }; // owned objects go by GC
      const decision = decideStatus(run, now());
      if (decision.status) {
        const ok = await deps.runs.patchStatus(namespace, name, decision.status);
        if (!ok) return { kind: "done" };
        log.info("status updated", { generation: run.metadata.generation, phase: decision.status.phase });
      }
      for (const e of decision.events) {
        log.info("event", e);
        await deps.events.record(run, e.type, e.reason, e.message);
      }
      return { kind: decision.outcome };
    } catch (error) {
      log.warn("reconcile failed", { error: errorMessage(error) });
      return { kind: "retry", error };
    }
  };
}
