// What every object the operator creates next to a run has in common: deterministic names, labels,
// the owner reference, and the pod scaffolding shared on purpose by trainer and evaluator pods.
// Pure. Job builders (training/, evaluation/), the promotion ConfigMap and the kube adapters all
// read these from here, so a label or a name is spelled once.
import { createHash } from "node:crypto";
import { API_VERSION, KIND } from "../api/continual-clip-run.ts";
import { connectionEnv, type S3ConnectionSpec } from "../api/s3-connection.ts";
import { ACCESS_KEY_ID, SECRET_ACCESS_KEY } from "../s3/credentials.ts";

export const MANAGER = "continual-clip-operator";

export const LABELS = {
  run: "ticclip.dev/run",
  round: "ticclip.dev/round",
  component: "ticclip.dev/component",
  alias: "ticclip.dev/alias",
  managedBy: "app.kubernetes.io/managed-by",
  kueueQueue: "kueue.x-k8s.io/queue-name",
} as const;
export const ANNOTATIONS = { planUri: "ticclip.dev/plan-uri", specGeneration: "ticclip.dev/spec-generation" } as const;

export type Component = "trainer" | "evaluator";
export const CONTAINERS: Record<Component, string> = { trainer: "trainer", evaluator: "evaluator" };

/** Trainer and evaluator Jobs of every run (the Job watch's selector). */
export const ROUND_JOB_SELECTOR = `${LABELS.component} in (trainer,evaluator)`;
/** Model ConfigMaps (spec.promotion.configMapName) the operator wrote: what its ConfigMap watch lists. */
export const MODEL_CONFIGMAP_SELECTOR = `${LABELS.alias},${LABELS.managedBy}=${MANAGER}`;

/** Exit code of a trainer or evaluator that was given bad input: retrying cannot help. */
export const INVALID_INPUT_EXIT_CODE = 2;
/**
 * Exit code of a container stopped by SIGTERM (128 + 15): the trainer's own code after it saved its
 * intra-round checkpoint (trainer-image errors.py EXIT_PREEMPTED), or the runtime's for a process that
 * died of the signal. The kubelet sends SIGTERM only to a pod that is being deleted (kubectl delete
 * pod, a drain, an eviction, preemption), so the replacement resumes and no retry is spent. The pods
 * have no liveness probe, the one other source of a kubelet SIGTERM.
 */
export const PREEMPTED_EXIT_CODE = 143;

// ---- names -------------------------------------------------------------------------------------

export const MAX_NAME = 63;

const shortHash = (s: string) => createHash("sha256").update(s).digest("hex").slice(0, 6);

/** Fits `<base><suffix>` into 63 characters, replacing the tail of base by a hash when too long. */
export function fitName(base: string, suffix: string): string {
  const full = `${base}${suffix}`;
  if (full.length <= MAX_NAME) return full;
  const keep = MAX_NAME - suffix.length - 7;
  return `${base.slice(0, keep).replace(/[-.]+$/, "")}-${shortHash(base)}${suffix}`;
}

export const roundLabel = (round: number) => String(round).padStart(4, "0");

/**
 * A run name as the base of a DNS label: run names are DNS-1123 subdomains and may hold dots, which
 * pod hostnames of an Indexed Job and Service names refuse. Dots become '-' plus a hash of the
 * original, so "a.b" and "a-b" stay apart; names without dots are unchanged. A Service name must
 * also start with a letter (DNS-1035).
 */
function labelBase(run: string, letterFirst = false): string {
  let base = run.includes(".") ? `${run.replaceAll(".", "-")}-${shortHash(run)}` : run;
  if (letterFirst && !/^[a-z]/.test(base)) base = `r-${base}`;
  return base;
}

/** `<run>-r0005-train`, shortened with a hash to fit 63 characters. */
export const trainJobName = (run: string, round: number) => fitName(labelBase(run), `-r${roundLabel(round)}-train`);

/** `<run>-r0005-eval`: the round's evaluation Job. */
export const evalJobName = (run: string, round: number) => fitName(labelBase(run), `-r${roundLabel(round)}-eval`);

/** Headless Service giving an Indexed Job's pods stable hostnames for torchrun rendezvous. */
export const trainServiceName = (run: string, round: number) =>
  fitName(labelBase(run, true), `-r${roundLabel(round)}-rdzv`);

/** Label values are limited to 63 characters, run names to 253. */
export const runLabelValue = (run: string) => fitName(run, "");

// ---- ownership and labels ----------------------------------------------------------------------

export type RunRef = { name: string; namespace: string; uid: string; generation: number };

export function ownerReference(run: { name: string; uid: string }) {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: run.name,
    uid: run.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** Labels of anything a run owns. */
export function runLabels(run: string): Record<string, string> {
  return { [LABELS.run]: runLabelValue(run), [LABELS.managedBy]: MANAGER };
}

/** Labels of a round's Job, its pods and its Service. */
export function roundLabels(run: { name: string }, round: number, component: Component): Record<string, string> {
  return {
    [LABELS.run]: runLabelValue(run.name),
    [LABELS.round]: roundLabel(round),
    [LABELS.component]: component,
    [LABELS.managedBy]: MANAGER,
  };
}

export type ConfigMap = {
  apiVersion: "v1";
  kind: "ConfigMap";
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences: ReturnType<typeof ownerReference>[];
    resourceVersion?: string;
  };
  data: Record<string, string>;
};

/** Whether two ConfigMaps hold the same data (what decides "unchanged", in the decision and the adapter). */
export const sameConfigMapData = (a: Record<string, string> | undefined, b: Record<string, string>) =>
  a !== undefined && Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);

// ---- pod scaffolding shared by every pod of a run ----------------------------------------------

export type EnvVar = { name: string; value?: string; valueFrom?: Record<string, unknown> };

/**
 * S3 connection and identity of a run's pods: the one environment builder of the trainer and
 * evaluator Jobs, which both read the run's buckets.
 */
export function podEnv(s3: S3ConnectionSpec, run: { name: string; namespace: string }, round: number): EnvVar[] {
  const env: EnvVar[] = [
    ...Object.entries(connectionEnv(s3)).map(([name, value]) => ({ name, value })),
    { name: "TICCLIP_RUN", value: `${run.namespace}/${run.name}` },
    { name: "TICCLIP_ROUND", value: String(round) },
    // The image's root filesystem is read-only; caches go to the writable /tmp volume.
    { name: "HOME", value: "/tmp" },
  ];
  // Credentials stay in the Secret: the pod references it, the plan never carries them.
  if (s3.credentialsSecretRef) {
    for (const key of [ACCESS_KEY_ID, SECRET_ACCESS_KEY]) {
      env.push({ name: key, valueFrom: { secretKeyRef: { name: s3.credentialsSecretRef.name, key } } });
    }
  }
  return env;
}

/** Restricted Pod Security Standard, for every pod of a run. */
export const POD_SECURITY_CONTEXT = {
  runAsNonRoot: true,
  runAsUser: 1000,
  runAsGroup: 1000,
  fsGroup: 1000,
  seccompProfile: { type: "RuntimeDefault" },
};
export const CONTAINER_SECURITY_CONTEXT = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ["ALL"] },
};

/**
 * Exit 2 (bad input) fails the Job at once; preemption, node drain, eviction and a plain pod delete
 * do not spend a retry. The API's Eviction and the scheduler's preemption set DisruptionTarget; a
 * plain delete does not, so the trainer's exit 143 after SIGTERM is the other way to tell.
 */
export function podFailurePolicy(container: string) {
  return {
    rules: [
      {
        action: "FailJob",
        onExitCodes: { containerName: container, operator: "In", values: [INVALID_INPUT_EXIT_CODE] },
      },
      { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
      {
        action: "Ignore",
        onExitCodes: { containerName: container, operator: "In", values: [PREEMPTED_EXIT_CODE] },
      },
    ],
  };
}

/** Resources of a container from a spec's requests/limits plus a GPU count. */
export function containerResources(
  resources: { requests?: Record<string, string | number>; limits?: Record<string, string | number> } | undefined,
  gpus: number,
): Record<string, Record<string, string | number>> {
  const limits: Record<string, string | number> = { ...(resources?.limits ?? {}) };
  if (gpus > 0) limits["nvidia.com/gpu"] = gpus;
  return {
    ...(resources?.requests ? { requests: resources.requests } : {}),
    ...(Object.keys(limits).length ? { limits } : {}),
  };
}

/**
 * Pods get no service-account token unless the spec names a service account: the trainer and the
 * evaluator read S3 with the run's Secret and never call the Kubernetes API. A named account is
 * taken as asking for its token (IRSA and workload identity inject their own projected token).
 */
export function serviceAccount(name: string | undefined): Record<string, unknown> {
  return name
    ? { serviceAccountName: name, automountServiceAccountToken: true }
    : { automountServiceAccountToken: false };
}
