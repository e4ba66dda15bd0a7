// The local executor: test and demo tooling, never part of the operator.
// The local cluster has no scheduler or kubelet. This process plays the kubelet for the operator's
// pods: it watches pods labelled ticclip.dev/component, runs each pod's command, args and env as a
// local process (the image mapped to a local command by a config file, e.g. the trainer image to
// the project's Python venv), and reports Running / Succeeded / Failed with the container's exit
// code back through the pod status, so the real Job controller completes, retries or fails Jobs
// exactly as on a cluster (backoffLimit, podFailurePolicy).
//
// Preemption: a pod that gets a DisruptionTarget=True condition (as the scheduler or an eviction
// sets it) has its process sent SIGTERM, then is marked Failed with the condition kept, so the Job's
// podFailurePolicy ignores it and the replacement pod resumes from the intra-round checkpoint. As
// the kubelet does, a process still there after the pod's grace period (a deleted or evicted pod's
// deletionGracePeriodSeconds, else terminationGracePeriodSeconds) gets SIGKILL: a hung or stopped
// (SIGSTOP) trainer never acts on SIGTERM.
//
//   node dev/local-executor.ts --config .local/executor.json [--namespaces a,b]
// Config: {"images": {"<image>": {"commandMap": {"python": "/venv/bin/python"}, "env": {...}, "cwd": "..."}}}
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import * as k8s from "@kubernetes/client-node";
import { z } from "zod";
import { loadKubeConfig, type RawObject } from "../operator/kube/client.ts";
import { ResilientWatch } from "../operator/kube/watch.ts";
import { createLogger } from "../operator/observability/log.ts";

const imageConfig = z.object({
  commandMap: z.record(z.string(), z.string()).default({}),
  env: z.record(z.string(), z.string()).default({}),
  cwd: z.string().optional(),
});
const executorConfig = z.object({ images: z.record(z.string(), imageConfig) });
type ImageConfig = z.infer<typeof imageConfig>;

const { values } = parseArgs({
  options: {
    config: { type: "string" },
    namespaces: { type: "string" },
    kubeconfig: { type: "string" },
    "log-dir": { type: "string" },
  },
});
const config = executorConfig.parse(JSON.parse(readFileSync(values.config ?? ".local/executor.json", "utf8")));
const logDir = values["log-dir"] ?? ".local/executor";
mkdirSync(logDir, { recursive: true });
const log = createLogger("info").child({ component: "local-executor" });
const kc = loadKubeConfig(values.kubeconfig);
const core = kc.makeApiClient(k8s.CoreV1Api);
const SELECTOR = "ticclip.dev/component";

type Running = {
  child: ChildProcess;
  pod: k8s.V1Pod;
  startedAt: Date;
  disrupted: boolean;
  output: string[];
  killTimer?: NodeJS.Timeout;
};
const running = new Map<string, Running>(); // by pod uid
const handled = new Set<string>(); // uids already started (or finished): each pod runs once

const now = () => new Date();
const strategic = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.StrategicMergePatch);

async function resolveEnv(
  pod: k8s.V1Pod,
  container: k8s.V1Container,
  image: ImageConfig,
): Promise<Record<string, string>> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "" };
  for (const e of container.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.secretKeyRef) {
      const s = await core.readNamespacedSecret({
        namespace: pod.metadata!.namespace!,
        name: e.valueFrom.secretKeyRef.name!,
      });
      const v = s.data?.[e.valueFrom.secretKeyRef.key];
      if (v === undefined)
        throw new Error(`secret ${e.valueFrom.secretKeyRef.name} has no key ${e.valueFrom.secretKeyRef.key}`);
      env[e.name] = Buffer.from(v, "base64").toString("utf8");
    } else if (e.valueFrom?.fieldRef) {
      const p = e.valueFrom.fieldRef.fieldPath;
      const ann = /^metadata\.annotations\['(.+)'\]$/.exec(p);
      if (ann) env[e.name] = pod.metadata?.annotations?.[ann[1]!] ?? "";
      else if (p === "metadata.name") env[e.name] = pod.metadata!.name!;
      else if (p === "metadata.namespace") env[e.name] = pod.metadata!.namespace!;
      else throw new Error(`env ${e.name}: fieldRef ${p} is not emulated by the local executor`);
    } else if (e.valueFrom?.resourceFieldRef) {
      // Left unset on purpose: a local process has no CPU request, and the trainer then sizes its
      // loader from the CPUs it may use, as in a pod without one.
    } else if (e.valueFrom) {
      // A new kind must be emulated here, not dropped: the pod would run without a variable it needs.
      throw new Error(
        `env ${e.name}: valueFrom ${Object.keys(e.valueFrom).join(", ")} is not emulated by the local executor`,
      );
    }
  }
  return { ...env, ...image.env };
}

async function patchStatus(pod: k8s.V1Pod, status: k8s.V1PodStatus): Promise<void> {
  await core.patchNamespacedPodStatus(
    { namespace: pod.metadata!.namespace!, name: pod.metadata!.name!, body: { status } },
    strategic,
  );
}

async function start(pod: k8s.V1Pod): Promise<void> {
  const uid = pod.metadata!.uid!;
  handled.add(uid);
  const container = pod.spec!.containers[0]!;
  const image = config.images[container.image ?? ""];
  const startedAt = now();
  const terminated = async (exitCode: number, reason: string, message: string) =>
    patchStatus(pod, {
      phase: exitCode === 0 ? "Succeeded" : "Failed",
      containerStatuses: [
        {
          name: container.name,
          image: container.image!,
          imageID: "",
          ready: false,
          restartCount: 0,
          started: false,
          state: { terminated: { exitCode, reason, message, startedAt, finishedAt: now() } },
        },
      ],
    });
  if (!image) {
    log.warn("no local command for image", { pod: pod.metadata!.name, image: container.image });
    await terminated(128, "ErrImageNeverPull", `local executor: no mapping for image ${container.image}`);
    return;
  }
  const argv = [...(container.command ?? []), ...(container.args ?? [])].map((a, i) =>
    i === 0 ? (image.commandMap[a] ?? a) : a,
  );
  const env = await resolveEnv(pod, container, image);
  const logFile = path.join(logDir, `${pod.metadata!.namespace}_${pod.metadata!.name}.log`);
  const out = createWriteStream(logFile);
  const child = spawn(argv[0]!, argv.slice(1), { env, cwd: image.cwd, stdio: ["ignore", "pipe", "pipe"] });
  const entry: Running = { child, pod, startedAt, disrupted: false, output: [] };
  running.set(uid, entry);
  const keep = (b: Buffer) => {
    out.write(b);
    entry.output.push(b.toString());
    if (entry.output.length > 50) entry.output.shift();
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  log.info("started", { pod: pod.metadata!.name, pid: child.pid, argv: argv.join(" ") });
  const runningPatched = patchStatus(pod, {
    phase: "Running",
    startTime: startedAt,
    containerStatuses: [
      {
        name: container.name,
        image: container.image!,
        imageID: "",
        ready: true,
        restartCount: 0,
        started: true,
        state: { running: { startedAt } },
      },
    ],
  }).catch((err) => log.warn("status Running failed", { error: String(err) }));
  // Listen before the first await (a command that fails at once would close unseen otherwise), and
  // report the end only after Running, so a late Running cannot overwrite it.
  child.on("error", (err) => keep(Buffer.from(`spawn error: ${err.message}\n`)));
  child.on("close", (code, signal) => {
    running.delete(uid);
    clearTimeout(entry.killTimer);
    out.end();
    const exitCode = code ?? (signal === "SIGKILL" ? 137 : 143);
    const tail = entry.output.join("").slice(-1024);
    log.info("exited", { pod: pod.metadata!.name, exitCode, signal, disrupted: entry.disrupted });
    void runningPatched
      .then(() => terminated(exitCode, exitCode === 0 ? "Completed" : "Error", tail))
      .catch((err) => log.warn("status update failed (pod gone?)", { pod: pod.metadata!.name, error: String(err) }));
  });
  await runningPatched;
}

function onPod(type: string, pod: k8s.V1Pod): void {
  const uid = pod.metadata?.uid;
  if (!uid) return;
  const r = running.get(uid);
  const disrupted = pod.status?.conditions?.some((c) => c.type === "DisruptionTarget" && c.status === "True");
  // Pod gone (Job or run deleted), deleted or evicted (the Eviction API sets DisruptionTarget, then deletes).
  if (type === "DELETED" || pod.metadata?.deletionTimestamp || disrupted) {
    if (r && !r.disrupted) {
      r.disrupted = true;
      // The API server deletes a pod that no scheduler bound to a node (as here) with a grace of 0;
      // a kubelet's pod is bound and gets its grace, so play that one.
      const unbound = !pod.spec?.nodeName && pod.metadata?.deletionGracePeriodSeconds === 0;
      const grace =
        (unbound ? undefined : pod.metadata?.deletionGracePeriodSeconds) ??
        pod.spec?.terminationGracePeriodSeconds ??
        30;
      log.info("stopping: SIGTERM, SIGKILL after the grace period", { pod: pod.metadata!.name, grace });
      r.child.kill("SIGTERM");
      r.killTimer = setTimeout(() => r.child.kill("SIGKILL"), grace * 1000);
    }
    return;
  }
  if (!handled.has(uid) && (pod.status?.phase ?? "Pending") === "Pending" && !disrupted) {
    void start(pod).catch((err) => log.error("start failed", { pod: pod.metadata?.name, error: String(err) }));
  }
}

const namespaces = values.namespaces ? values.namespaces.split(",") : [undefined];
for (const ns of namespaces) {
  const watch = new ResilientWatch(kc, {
    name: `pods/${ns ?? "*"}`,
    path: `${ns ? `/api/v1/namespaces/${ns}/pods` : "/api/v1/pods"}?labelSelector=${encodeURIComponent(SELECTOR)}`,
    list: async () => {
      const res = ns
        ? await core.listNamespacedPod({ namespace: ns, labelSelector: SELECTOR })
        : await core.listPodForAllNamespaces({ labelSelector: SELECTOR });
      return { items: res.items as unknown as RawObject[], resourceVersion: res.metadata?.resourceVersion ?? "" };
    },
    onList: (items) => {
      for (const p of items) onPod("ADDED", p as unknown as k8s.V1Pod);
    },
    onEvent: ({ type, object }) => onPod(type, object as unknown as k8s.V1Pod),
    timeoutSeconds: 60,
    log,
  });
  watch.start();
}
log.info("local executor started", { namespaces: values.namespaces ?? "*", images: Object.keys(config.images) });
const shutdown = () => {
  for (const r of running.values()) r.child.kill("SIGTERM");
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
setInterval(() => {}, 1 << 30);
