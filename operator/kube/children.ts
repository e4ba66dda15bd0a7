// Kubernetes adapter for what the operator owns or reads next to a run: training Jobs, their
// pods (for failure reasons), rendezvous Services, and the run's S3 Secret.
import * as k8s from "@kubernetes/client-node";
import type { JobObservation } from "../controller/rounds.ts";
import { LABELS, TRAINER_CONTAINER } from "../training/job.ts";
import { runLabelValue } from "../training/naming.ts";
import { isConflict, isNotFound } from "./errors.ts";
import { FIELD_MANAGER, type RawObject } from "./client.ts";
import { applyConfigMap, type ApplyResult, type ConfigMap, type ConfigMapApi } from "../promotion/configmap.ts";

export const ROUND_JOB_SELECTOR = `${LABELS.component} in (trainer,evaluator)`;
const iso = (d: Date | string | undefined) => (d === undefined ? undefined : new Date(d).toISOString().replace(/\.\d{3}Z$/, "Z"));

export class ChildClient {
  readonly #batch: k8s.BatchV1Api;
  readonly #core: k8s.CoreV1Api;
  constructor(kc: k8s.KubeConfig) {
    this.#batch = kc.makeApiClient(k8s.BatchV1Api);
    this.#core = kc.makeApiClient(k8s.CoreV1Api);
  }

  /** Trainer and evaluator Jobs of all runs (for the Job watch's list). */
  async listRoundJobs(namespace?: string): Promise<{ items: RawObject[]; resourceVersion: string }> {
    const labelSelector = ROUND_JOB_SELECTOR;
    const res = namespace
      ? await this.#batch.listNamespacedJob({ namespace, labelSelector })
      : await this.#batch.listJobForAllNamespaces({ labelSelector });
    return { items: res.items as unknown as RawObject[], resourceVersion: res.metadata?.resourceVersion ?? "" };
  }

  /** The run's trainer and evaluator Jobs by round index (ticclip.dev/round label), in one list call. */
  async roundJobs(namespace: string, run: string): Promise<Record<"trainer" | "evaluator", Map<number, JobObservation>>> {
    const list = await this.#batch.listNamespacedJob({
      namespace,
      labelSelector: `${LABELS.run}=${runLabelValue(run)},${ROUND_JOB_SELECTOR}`,
    });
    const byComponent = { trainer: new Map<number, JobObservation>(), evaluator: new Map<number, JobObservation>() };
    for (const job of list.items) {
      const round = Number(job.metadata?.labels?.[LABELS.round]);
      const component = job.metadata?.labels?.[LABELS.component];
      if (!Number.isInteger(round) || (component !== "trainer" && component !== "evaluator")) continue;
      const out = byComponent[component];
      const conds = job.status?.conditions ?? [];
      const failed = conds.find((c) => c.type === "Failed" && c.status === "True");
      const complete = conds.some((c) => c.type === "Complete" && c.status === "True");
      let failure: JobObservation["failure"];
      if (failed) {
        const detail = await this.#lastPodFailure(namespace, job.metadata!.name!, job.spec?.template?.spec?.containers?.[0]?.name ?? TRAINER_CONTAINER);
        failure = { reason: failed.reason ?? "JobFailed", message: [failed.message, detail].filter(Boolean).join("; ") };
      }
      out.set(round, {
        name: job.metadata!.name!,
        active: job.status?.active ?? 0,
        succeeded: job.status?.succeeded ?? 0,
        failed: job.status?.failed ?? 0,
        complete,
        failure,
        startTime: iso(job.status?.startTime),
        completionTime: iso(job.status?.completionTime ?? (failed?.lastTransitionTime as Date | undefined)),
      });
    }
    return byComponent;
  }

  /** "trainer exited 137 (OOMKilled): ..." for the most recent failed pod of a Job. */
  async #lastPodFailure(namespace: string, jobName: string, container: string): Promise<string | undefined> {
    const pods = await this.#core.listNamespacedPod({ namespace, labelSelector: `batch.kubernetes.io/job-name=${jobName}` });
    const terminated = pods.items
      .map((p) => p.status?.containerStatuses?.find((c) => c.name === container)?.state?.terminated)
      .filter((t): t is k8s.V1ContainerStateTerminated => t !== undefined && t.exitCode !== 0)
      .sort((a, b) => new Date(b.finishedAt ?? 0).getTime() - new Date(a.finishedAt ?? 0).getTime());
    const t = terminated[0];
    if (!t) return undefined;
    return `${container} exited ${t.exitCode}${t.reason ? ` (${t.reason})` : ""}${t.message ? `: ${t.message.trim().slice(-512)}` : ""}`;
  }

  /** Creates an object unless one with its name exists. Returns true when this call created it. */
  async createIfAbsent(obj: Record<string, any>): Promise<boolean> {
    const namespace = obj.metadata.namespace as string;
    try {
      if (obj.kind === "Job") await this.#batch.createNamespacedJob({ namespace, body: obj as k8s.V1Job, fieldManager: FIELD_MANAGER });
      else if (obj.kind === "Service") await this.#core.createNamespacedService({ namespace, body: obj as k8s.V1Service, fieldManager: FIELD_MANAGER });
      else throw new Error(`createIfAbsent: unsupported kind ${obj.kind}`);
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw err;
    }
  }

  /** Creates or updates the model ConfigMap (owned by the run). */
  applyConfigMap(cm: ConfigMap): Promise<ApplyResult> {
    return applyConfigMap(this.#core as unknown as ConfigMapApi, cm);
  }

  /** Reads a Secret of the run's own namespace; undefined when it does not exist. */
  async secretData(namespace: string, name: string): Promise<{ data?: Record<string, string> } | undefined> {
    try {
      const s = await this.#core.readNamespacedSecret({ namespace, name });
      return { data: s.data ?? {} };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }
}
