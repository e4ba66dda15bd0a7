// Helpers of the e2e tier (test/e2e, adr/0004): a cluster with a real node (kubelet, containerd,
// kube-proxy, CoreDNS) and our images built from our Dockerfiles, all brought up by dev/e2e.sh,
// which exports TICCLIP_NODE_NAME, TICCLIP_TRAINER_IMAGE, TICCLIP_OPERATOR_IMAGE and HELM. Missing
// variables fail loudly, as the integration tier's do.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { REPO_ROOT, kubectl, kubectlOk, requireEnv, waitFor } from "./cluster.ts";
import { createBucket, localRunManifest } from "./local-run.ts";

export const CHART = path.join(REPO_ROOT, "charts/continual-clip-operator");

export const trainerImage = () => requireEnv("TICCLIP_TRAINER_IMAGE");
export const operatorImage = () => requireEnv("TICCLIP_OPERATOR_IMAGE");
export const nodeName = () => requireEnv("TICCLIP_NODE_NAME");

export function helmOk(args: string[]): string {
  const res = spawnSync(requireEnv("HELM"), ["--kubeconfig", requireEnv("KUBECONFIG"), ...args], {
    encoding: "utf8",
    timeout: 300_000,
    // helm keeps caches under $HOME: never the user's.
    env: { ...process.env, HOME: path.join(REPO_ROOT, ".local", "e2e-helm-home") },
  });
  if (res.status !== 0) throw new Error(`helm ${args.join(" ")} failed (${res.status}): ${res.stderr}${res.stdout}`);
  return res.stdout;
}

/**
 * `helm install` of the chart into NAMESPACE with the locally built operator image (never pulled:
 * it exists only in the node's containerd), reconciling runs of the namespaces WATCH.
 */
export function helmInstallOperator(namespace: string, watch: string[], set: string[] = []): string {
  const image = operatorImage();
  const colon = image.lastIndexOf(":");
  const release = "cco";
  helmOk([
    "install",
    release,
    CHART,
    "--namespace",
    namespace,
    "--set",
    `image.repository=${image.slice(0, colon)}`,
    "--set",
    `image.tag=${image.slice(colon + 1)}`,
    "--set",
    "image.pullPolicy=Never",
    "--set",
    `watchNamespaces={${watch.join(",")}}`,
    ...set.flatMap((s) => ["--set", s]),
  ]);
  return release;
}

/**
 * Creates a run NAME in NAMESPACE training in the trainer image (never pulled), with buckets of its
 * own for slices and artifacts; SPEC is merged over local-run.ts's tiny CPU run.
 */
export async function createRun(namespace: string, name: string, spec: Record<string, any> = {}) {
  const data = await createBucket(`${name}-data`);
  const runs = await createBucket(`${name}-runs`);
  const m = localRunManifest({
    namespace,
    name,
    dataBucket: data,
    runsBucket: runs,
    spec: { ...spec, trainer: { image: trainerImage(), imagePullPolicy: "Never", ...(spec.trainer ?? {}) } },
  });
  kubectlOk(["create", "-f", "-"], JSON.stringify(m));
  return { data, runs };
}

export type Pod = {
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    labels?: Record<string, string>;
    deletionTimestamp?: string;
  };
  spec: Record<string, any> & { nodeName?: string; containers: Array<Record<string, any>> };
  status: {
    phase: string;
    podIP?: string;
    conditions?: Array<{ type: string; status: string; lastTransitionTime?: string }>;
    containerStatuses?: Array<{
      name: string;
      ready: boolean;
      restartCount: number;
      state: {
        running?: { startedAt: string };
        terminated?: { exitCode: number; reason?: string; startedAt?: string; finishedAt?: string };
        waiting?: { reason?: string; message?: string };
      };
    }>;
  };
};

export function pods(namespace: string, selector: string): Pod[] {
  return (JSON.parse(kubectlOk(["get", "pods", "-n", namespace, "-l", selector, "-o", "json"])) as { items: Pod[] })
    .items;
}

/** A container of the pod is waiting for a reason that will not resolve by itself. */
const STUCK =
  /ErrImage|ImagePullBackOff|ErrImageNeverPull|CreateContainerConfigError|CreateContainerError|InvalidImageName|CrashLoopBackOff/;

/** Fails at once, with the reason, when a pod of the selector cannot start (instead of timing out). */
export function assertNotStuck(namespace: string, selector: string): void {
  for (const p of pods(namespace, selector)) {
    for (const c of p.status.containerStatuses ?? []) {
      const reason = c.state.waiting?.reason ?? "";
      if (STUCK.test(reason)) {
        throw new Error(`pod ${p.metadata.name}: container ${c.name} ${reason}: ${c.state.waiting?.message ?? ""}`);
      }
    }
  }
}

/** Waits until a pod of the selector (other than those in EXCEPT) has its container running. */
export function runningPod(
  namespace: string,
  selector: string,
  timeoutMs: number,
  except: Set<string> = new Set(),
): Promise<Pod> {
  return waitFor(
    `a running pod of ${selector} in ${namespace}`,
    () => {
      assertNotStuck(namespace, selector);
      return pods(namespace, selector).find(
        (p) =>
          !except.has(p.metadata.uid) &&
          !p.metadata.deletionTimestamp &&
          p.status.containerStatuses?.some((c) => c.state.running),
      );
    },
    timeoutMs,
    500,
  );
}

/** Logs of a pod's container (the kubelet serves them: the API server dials the node). */
export function podLogs(namespace: string, pod: string, container?: string): string {
  const res = kubectl(["logs", "-n", namespace, pod, ...(container ? ["-c", container] : [])]);
  return res.stdout + res.stderr;
}

/** Events of a namespace, one line each (for failure messages). */
export function events(namespace: string): string {
  return kubectl(["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]).stdout;
}
