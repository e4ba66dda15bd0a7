// Kubernetes adapter for what the operator owns or reads next to a run: round Jobs, their pods
// (for failure reasons), rendezvous Services, the model ConfigMap, and the run's S3 Secret.
import { isoSeconds } from "../api/common.ts";
import * as k8s from "@kubernetes/client-node";
import { isConflict, isNotFound, rejection, statusCode } from "./errors.ts";
import { FIELD_MANAGER, type ObjectCache, type RawObject } from "./client.ts";
import {
  CONTAINERS,
  LABELS,
  MODEL_CONFIGMAP_SELECTOR,
  ROUND_JOB_SELECTOR,
  runLabelValue,
  sameConfigMapData,
  type ConfigMap,
} from "./objects.ts";

export type JobObservation = {
  name: string;
  active: number;
  succeeded: number;
  failed: number;
  complete: boolean;
  /** The Job's Failed condition, with the last failed pod's exit code / reason folded into message. */
  failure?: { reason: string; message: string } | undefined;
  startTime?: string | undefined;
  completionTime?: string | undefined;
};

const iso = (d: Date | string | undefined) => (d === undefined ? undefined : isoSeconds(new Date(d)));

/** The calls applyConfigMap makes; @kubernetes/client-node's CoreV1Api fits it structurally. */
export type ConfigMapApi = {
  readNamespacedConfigMap(p: { name: string; namespace: string }): Promise<{
    metadata?: { resourceVersion?: string; ownerReferences?: { uid?: string }[] };
    data?: Record<string, string>;
  }>;
  createNamespacedConfigMap(p: { namespace: string; body: ConfigMap }): Promise<unknown>;
  replaceNamespacedConfigMap(p: { name: string; namespace: string; body: ConfigMap }): Promise<unknown>;
};

export type ApplyResult = "created" | "updated" | "unchanged" | "notOwned";

/**
 * Create-if-absent, else replace when the data differ. A ConfigMap the run does not own is left
 * alone ("notOwned"). A 409 (raced create or stale read) is retried once.
 */
export async function applyConfigMap(
  api: ConfigMapApi,
  cm: ConfigMap,
  onWritten?: (written: unknown) => void,
): Promise<ApplyResult> {
  const { name, namespace } = cm.metadata;
  for (let attempt = 0; ; attempt++) {
    let current: Awaited<ReturnType<ConfigMapApi["readNamespacedConfigMap"]>> | undefined;
    try {
      current = await api.readNamespacedConfigMap({ name, namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    try {
      if (!current) {
        // Not onWritten?.(await ...): an absent callback would skip the call itself.
        const created = await api.createNamespacedConfigMap({ namespace, body: cm });
        onWritten?.(created);
        return "created";
      }
      const owned = current.metadata?.ownerReferences?.some((o) => o.uid === cm.metadata.ownerReferences[0]?.uid);
      if (!owned) return "notOwned";
      if (sameConfigMapData(current.data, cm.data)) return "unchanged";
      const rv = current.metadata?.resourceVersion;
      const body = { ...cm, metadata: { ...cm.metadata, ...(rv ? { resourceVersion: rv } : {}) } };
      const replaced = await api.replaceNamespacedConfigMap({ name, namespace, body });
      onWritten?.(replaced);
      return "updated";
    } catch (err) {
      if (isConflict(err) && attempt === 0) continue;
      throw err;
    }
  }
}

/** What the cache keeps of a round Job: enough for roundJobs, a few hundred bytes. */
export type RoundJob = {
  namespace: string;
  name: string;
  uid: string;
  /** The uid of the controller ownerReference (the run). */
  ownerUid: string | undefined;
  round: number;
  component: "trainer" | "evaluator";
  container: string;
  failed: { reason: string; message: string | undefined } | undefined;
  observation: Omit<JobObservation, "failure">;
};

type JobLike = {
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    labels?: Record<string, string>;
    ownerReferences?: { uid: string; controller?: boolean }[];
  };
  spec?: { template?: { spec?: { containers?: { name?: string }[] } } };
  status?: {
    active?: number;
    succeeded?: number;
    failed?: number;
    startTime?: Date | string;
    completionTime?: Date | string;
    conditions?: {
      type: string;
      status: string;
      reason?: string;
      message?: string;
      lastTransitionTime?: Date | string;
    }[];
  };
};

/** A round Job (trainer or evaluator, round label set) as the cache and roundJobs see it. */
export function roundJob(raw: RawObject): RoundJob | undefined {
  const job = raw as unknown as JobLike;
  const round = Number(job.metadata?.labels?.[LABELS.round]);
  const component = job.metadata?.labels?.[LABELS.component];
  if (!Number.isInteger(round) || (component !== "trainer" && component !== "evaluator")) return undefined;
  const conds = job.status?.conditions ?? [];
  const failed = conds.find((c) => c.type === "Failed" && c.status === "True");
  const name = job.metadata?.name ?? "";
  return {
    namespace: job.metadata?.namespace ?? "",
    name,
    uid: job.metadata?.uid ?? "",
    ownerUid: job.metadata?.ownerReferences?.find((o) => o.controller)?.uid,
    round,
    component,
    container: job.spec?.template?.spec?.containers?.[0]?.name ?? CONTAINERS[component],
    failed: failed ? { reason: failed.reason ?? "JobFailed", message: failed.message } : undefined,
    observation: {
      name,
      active: job.status?.active ?? 0,
      succeeded: job.status?.succeeded ?? 0,
      failed: job.status?.failed ?? 0,
      complete: conds.some((c) => c.type === "Complete" && c.status === "True"),
      startTime: iso(job.status?.startTime),
      completionTime: iso(job.status?.completionTime ?? failed?.lastTransitionTime),
    },
  };
}

/** What readConfigMap reports of a model ConfigMap (and the ConfigMap watch's cache keeps). */
export type ModelConfigMap = { ownerUids: string[]; data: Record<string, string> };

export function modelConfigMap(raw: RawObject): ModelConfigMap {
  const cm = raw as unknown as { metadata: { ownerReferences?: { uid: string }[] }; data?: Record<string, string> };
  return { ownerUids: (cm.metadata.ownerReferences ?? []).map((o) => o.uid), data: cm.data ?? {} };
}

/** Remembered pod-failure details, Secrets and absent ConfigMaps, at most (each). */
const MAX_REMEMBERED = 10_000;

function remember(set: Set<string>, key: string): void {
  set.add(key);
  if (set.size > MAX_REMEMBERED) set.delete(set.values().next().value!);
}
/**
 * How long a Secret read is reused. Secrets are read, never watched: watching them would need
 * list/watch on every Secret of the namespace. Between reads a deleted or rotated Secret takes
 * effect at most this late; a missing one is never remembered, so creating it takes effect at the
 * next reconcile.
 */
export const SECRET_TTL_MS = 30_000;

export class ChildClient {
  readonly #batch: k8s.BatchV1Api;
  readonly #core: k8s.CoreV1Api;
  readonly #jobs: ObjectCache<RoundJob> | undefined;
  readonly #configMaps: ObjectCache<ModelConfigMap> | undefined;
  readonly #podFailures = new Map<string, string | undefined>();
  readonly #secrets = new Map<string, { readAt: number; data: Record<string, string> }>();
  /** Model ConfigMaps read as absent while the watch was synced (see readConfigMap). */
  readonly #absentConfigMaps = new Set<string>();
  /**
   * jobs: the Job watch's cache; without one every roundJobs is a list call. configMaps: the model
   * ConfigMap watch's cache; without one every readConfigMap is a read.
   */
  constructor(kc: k8s.KubeConfig, jobs?: ObjectCache<RoundJob>, configMaps?: ObjectCache<ModelConfigMap>) {
    this.#batch = kc.makeApiClient(k8s.BatchV1Api);
    this.#core = kc.makeApiClient(k8s.CoreV1Api);
    this.#jobs = jobs;
    this.#configMaps = configMaps;
  }

  /** Model ConfigMaps the operator wrote, in one namespace or all (for the ConfigMap watch's list). */
  async listModelConfigMaps(namespace?: string): Promise<{ items: RawObject[]; resourceVersion: string }> {
    const labelSelector = MODEL_CONFIGMAP_SELECTOR;
    const res = namespace
      ? await this.#core.listNamespacedConfigMap({ namespace, labelSelector })
      : await this.#core.listConfigMapForAllNamespaces({ labelSelector });
    return { items: res.items as unknown as RawObject[], resourceVersion: res.metadata?.resourceVersion ?? "" };
  }

  /** Trainer and evaluator Jobs of all runs (for the Job watch's list). */
  async listRoundJobs(namespace?: string): Promise<{ items: RawObject[]; resourceVersion: string }> {
    const labelSelector = ROUND_JOB_SELECTOR;
    const res = namespace
      ? await this.#batch.listNamespacedJob({ namespace, labelSelector })
      : await this.#batch.listJobForAllNamespaces({ labelSelector });
    return { items: res.items as unknown as RawObject[], resourceVersion: res.metadata?.resourceVersion ?? "" };
  }

  /**
   * The run's trainer and evaluator Jobs by round index (ticclip.dev/round label): from the Job
   * watch's cache once it has synced, else in one list call. Only Jobs the run owns count: a label
   * is easy to copy, the owner's uid is not (and a run recreated under the same name does not
   * inherit the Jobs of the old one).
   */
  async roundJobs(
    namespace: string,
    run: { name: string; uid: string },
  ): Promise<Record<"trainer" | "evaluator", Map<number, JobObservation>>> {
    let records: RoundJob[];
    if (this.#jobs?.synced) records = this.#jobs.byIndex(run.uid);
    else {
      const list = await this.#batch.listNamespacedJob({
        namespace,
        labelSelector: `${LABELS.run}=${runLabelValue(run.name)},${ROUND_JOB_SELECTOR}`,
      });
      records = list.items
        .map((j) => roundJob(j as unknown as RawObject))
        .filter((r): r is RoundJob => r !== undefined);
    }
    const byComponent = { trainer: new Map<number, JobObservation>(), evaluator: new Map<number, JobObservation>() };
    for (const job of records) {
      if (job.ownerUid !== run.uid || job.namespace !== namespace) continue;
      let failure: JobObservation["failure"];
      if (job.failed) {
        const detail = await this.#lastPodFailure(namespace, job.name, job.uid, job.container);
        failure = { reason: job.failed.reason, message: [job.failed.message, detail].filter(Boolean).join("; ") };
      }
      byComponent[job.component].set(job.round, { ...job.observation, failure });
    }
    return byComponent;
  }

  /**
   * "trainer exited 137 (OOMKilled): ..." for the most recent failed pod of a Job. A failed Job
   * starts no more pods, so the answer is kept by Job uid: one pod list per failed Job, not one per
   * reconcile for as long as the Job exists.
   */
  async #lastPodFailure(
    namespace: string,
    jobName: string,
    jobUid: string,
    container: string,
  ): Promise<string | undefined> {
    if (this.#podFailures.has(jobUid)) return this.#podFailures.get(jobUid);
    const detail = await this.#readPodFailure(namespace, jobName, container);
    this.#podFailures.set(jobUid, detail);
    if (this.#podFailures.size > MAX_REMEMBERED) this.#podFailures.delete(this.#podFailures.keys().next().value!);
    return detail;
  }

  async #readPodFailure(namespace: string, jobName: string, container: string): Promise<string | undefined> {
    const pods = await this.#core.listNamespacedPod({
      namespace,
      labelSelector: `batch.kubernetes.io/job-name=${jobName}`,
    });
    const terminated = pods.items
      .map((p) => p.status?.containerStatuses?.find((c) => c.name === container)?.state?.terminated)
      .filter((t): t is k8s.V1ContainerStateTerminated => t !== undefined && t.exitCode !== 0)
      .sort((a, b) => new Date(b.finishedAt ?? 0).getTime() - new Date(a.finishedAt ?? 0).getTime());
    const t = terminated[0];
    if (!t) return undefined;
    return `${container} exited ${t.exitCode}${t.reason ? ` (${t.reason})` : ""}${t.message ? `: ${t.message.trim().slice(-512)}` : ""}`;
  }

  /**
   * Evicts the running pods of a Job through the Eviction API (a stalled trainer, controller/progress.ts):
   * an evicted pod gets the DisruptionTarget condition, which the Job's podFailurePolicy ignores, so
   * its replacement does not spend backoffLimit. Returns the pods evicted; a pod already gone is skipped.
   */
  async evictJobPods(namespace: string, jobName: string): Promise<string[]> {
    const pods = await this.#core.listNamespacedPod({
      namespace,
      labelSelector: `batch.kubernetes.io/job-name=${jobName}`,
    });
    const running = pods.items.filter(
      (p) => !p.metadata?.deletionTimestamp && p.status?.phase !== "Succeeded" && p.status?.phase !== "Failed",
    );
    const evicted: string[] = [];
    for (const pod of running) {
      const name = pod.metadata!.name!;
      try {
        await this.#core.createNamespacedPodEviction({
          name,
          namespace,
          body: { apiVersion: "policy/v1", kind: "Eviction", metadata: { name, namespace } },
        });
        evicted.push(name);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }
    return evicted;
  }

  /** Creates an object unless one with its name exists. Returns true when this call created it. */
  async createIfAbsent(obj: Record<string, any>): Promise<boolean> {
    const namespace = obj.metadata.namespace as string;
    try {
      if (obj.kind === "Job") {
        const created = await this.#batch.createNamespacedJob({
          namespace,
          body: obj as k8s.V1Job,
          fieldManager: FIELD_MANAGER,
        });
        // Seen by the next reconcile even before the watch delivers it.
        this.#jobs?.put(created as unknown as RawObject);
      } else if (obj.kind === "Service")
        await this.#core.createNamespacedService({
          namespace,
          body: obj as k8s.V1Service,
          fieldManager: FIELD_MANAGER,
        });
      else throw new Error(`createIfAbsent: unsupported kind ${obj.kind}`);
      return true;
    } catch (err) {
      if (isConflict(err)) return false;
      throw rejection(err, `${obj.kind} ${namespace}/${obj.metadata.name} refused (HTTP ${statusCode(err)})`) ?? err;
    }
  }

  /** A ConfigMap's owners and data; undefined when it does not exist. */
  async readConfigMap(namespace: string, name: string): Promise<ModelConfigMap | undefined> {
    // The watch shows only ConfigMaps with our labels. One it does not show is read once: someone
    // else's is reported (ConfigMapNotOwned), an absent one is remembered as absent. One created by
    // someone else after that is found by applyConfigMap, which reads before writing.
    const key = `${namespace}/${name}`;
    const synced = this.#configMaps?.synced === true;
    if (synced) {
      const cached = this.#configMaps!.get(namespace, name);
      if (cached || this.#absentConfigMaps.has(key)) return cached;
    }
    try {
      return modelConfigMap((await this.#core.readNamespacedConfigMap({ namespace, name })) as unknown as RawObject);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      if (synced) remember(this.#absentConfigMaps, key);
      return undefined;
    }
  }

  /** Creates or updates the model ConfigMap (owned by the run). */
  async applyConfigMap(cm: ConfigMap): Promise<ApplyResult> {
    const key = `${cm.metadata.namespace}/${cm.metadata.name}`;
    // Seen by the next reconcile even before the watch delivers it.
    const result = await applyConfigMap(this.#core as unknown as ConfigMapApi, cm, (written) => {
      this.#absentConfigMaps.delete(key);
      this.#configMaps?.put(written as RawObject);
    });
    // Someone else's ConfigMap appeared after it was remembered absent: forget that, so the next
    // readConfigMap reads it and the run reports ConfigMapNotOwned instead of applying in a loop.
    if (result === "notOwned") this.#absentConfigMaps.delete(key);
    return result;
  }

  /**
   * Reads a Secret of the run's own namespace; undefined when it does not exist. Runs that share a
   * Secret share one read per SECRET_TTL_MS.
   */
  async secretData(
    namespace: string,
    name: string,
    now = Date.now(),
  ): Promise<{ data?: Record<string, string> } | undefined> {
    const key = `${namespace}/${name}`;
    const hit = this.#secrets.get(key);
    if (hit && now - hit.readAt < SECRET_TTL_MS) return { data: hit.data };
    this.#secrets.delete(key);
    try {
      const s = await this.#core.readNamespacedSecret({ namespace, name });
      const data = s.data ?? {};
      this.#secrets.set(key, { readAt: now, data });
      if (this.#secrets.size > MAX_REMEMBERED) this.#secrets.delete(this.#secrets.keys().next().value!);
      return { data };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }
}
