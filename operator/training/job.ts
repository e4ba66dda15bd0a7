// Builds a round's training Job (and, for several nodes, its headless Service) from the run's
// spec. Pure: the same inputs give the same objects, so create-if-absent is idempotent.
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import { API_VERSION, KIND } from "../api/continual-clip-run.ts";
import { ACCESS_KEY_ID, SECRET_ACCESS_KEY } from "../s3/credentials.ts";
import { roundLabel, runLabelValue, trainJobName, trainServiceName } from "./naming.ts";

export const LABELS = {
  run: "ticclip.dev/run",
  round: "ticclip.dev/round",
  component: "ticclip.dev/component",
  managedBy: "app.kubernetes.io/managed-by",
  kueueQueue: "kueue.x-k8s.io/queue-name",
} as const;
export const ANNOTATIONS = { planUri: "ticclip.dev/plan-uri", specGeneration: "ticclip.dev/spec-generation" } as const;
export const TRAINER_CONTAINER = "trainer";
export const INVALID_PLAN_EXIT_CODE = 2;
export const RENDEZVOUS_PORT = 29500;
const MANAGER = "continual-clip-operator";
const FINISHED_TTL_SECONDS = 7 * 24 * 3600;

export type RunRef = { name: string; namespace: string; uid: string; generation: number };

export type TrainJobInput = { run: RunRef; spec: ContinualClipRunSpec; round: number; planUri: string };

export function ownerReference(run: RunRef) {
  return { apiVersion: API_VERSION, kind: KIND, name: run.name, uid: run.uid, controller: true, blockOwnerDeletion: true };
}

export function trainLabels(run: RunRef, round: number, component: "trainer" | "evaluator" = "trainer"): Record<string, string> {
  return {
    [LABELS.run]: runLabelValue(run.name),
    [LABELS.round]: roundLabel(round),
    [LABELS.component]: component,
    [LABELS.managedBy]: MANAGER,
  };
}

export type EnvVar = { name: string; value?: string; valueFrom?: Record<string, unknown> };

/** S3 settings and identity of a run's pods (trainer and evaluator alike). */
export function podEnv(spec: ContinualClipRunSpec, run: RunRef, round: number): EnvVar[] {
  const s3 = spec.source.s3;
  const env: EnvVar[] = [
    { name: "AWS_REGION", value: s3.region },
    { name: "TICCLIP_RUN", value: `${run.namespace}/${run.name}` },
    { name: "TICCLIP_ROUND", value: String(round) },
    // The image's root filesystem is read-only; caches go to the writable /tmp volume.
    { name: "HOME", value: "/tmp" },
  ];
  if (s3.endpoint) env.push({ name: "S3_ENDPOINT", value: s3.endpoint });
  // Credentials stay in the Secret: the pod references it, the plan never carries them.
  if (s3.credentialsSecretRef) {
    for (const key of [ACCESS_KEY_ID, SECRET_ACCESS_KEY]) {
      env.push({ name: key, valueFrom: { secretKeyRef: { name: s3.credentialsSecretRef.name, key } } });
    }
  }
  return env;
}

export const POD_SECURITY_CONTEXT = { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000, seccompProfile: { type: "RuntimeDefault" } };
export const CONTAINER_SECURITY_CONTEXT = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } };

function trainerEnv(input: TrainJobInput): EnvVar[] {
  const { spec, run, round } = input;
  const env = podEnv(spec, run, round);
  const { nodes, gpusPerNode } = spec.trainer;
  if (nodes > 1) {
    // torchrun rendezvous (documented in trainer-image/README.md): index 0 is the master.
    env.push(
      { name: "MASTER_ADDR", value: `${trainJobName(run.name, round)}-0.${trainServiceName(run.name, round)}` },
      { name: "MASTER_PORT", value: String(RENDEZVOUS_PORT) },
      { name: "NNODES", value: String(nodes) },
      { name: "NODE_RANK", valueFrom: { fieldRef: { fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']" } } },
    );
  }
  env.push({ name: "NPROC_PER_NODE", value: String(Math.max(1, gpusPerNode)) });
  return env;
}

export function buildTrainJob(input: TrainJobInput): Record<string, any> {
  const { run, spec, round, planUri } = input;
  const t = spec.trainer;
  const name = trainJobName(run.name, round);
  const labels = trainLabels(run, round);
  const jobLabels = t.queueName ? { ...labels, [LABELS.kueueQueue]: t.queueName } : labels;
  const limits: Record<string, string | number> = { ...(t.resources?.limits ?? {}) };
  if (t.gpusPerNode > 0) limits["nvidia.com/gpu"] = t.gpusPerNode;
  const indexed = t.nodes > 1;

  const podSpec: Record<string, unknown> = {
    restartPolicy: "Never",
    securityContext: POD_SECURITY_CONTEXT,
    containers: [
      {
        name: TRAINER_CONTAINER,
        image: t.image,
        ...(t.imagePullPolicy ? { imagePullPolicy: t.imagePullPolicy } : {}),
        command: ["python", "-m", "ticclip_trainer", "train", "--plan", planUri],
        env: trainerEnv(input),
        resources: { ...(t.resources?.requests ? { requests: t.resources.requests } : {}), ...(Object.keys(limits).length ? { limits } : {}) },
        securityContext: CONTAINER_SECURITY_CONTEXT,
        volumeMounts: [
          { name: "dshm", mountPath: "/dev/shm" },
          { name: "tmp", mountPath: "/tmp" },
        ],
        ...(indexed ? { ports: [{ name: "rendezvous", containerPort: RENDEZVOUS_PORT }] } : {}),
      },
    ],
    volumes: [
      // Data loader workers share tensors through /dev/shm; the container default (64 MiB) is too small.
      { name: "dshm", emptyDir: { medium: "Memory" } },
      { name: "tmp", emptyDir: {} },
    ],
    ...(indexed ? { subdomain: trainServiceName(run.name, round) } : {}),
    ...(t.nodeSelector ? { nodeSelector: t.nodeSelector } : {}),
    ...(t.tolerations ? { tolerations: t.tolerations } : {}),
    ...(t.affinity ? { affinity: t.affinity } : {}),
    ...(t.priorityClassName ? { priorityClassName: t.priorityClassName } : {}),
    ...(t.serviceAccountName ? { serviceAccountName: t.serviceAccountName } : {}),
    ...(t.imagePullSecrets ? { imagePullSecrets: t.imagePullSecrets } : {}),
  };

  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name,
      namespace: run.namespace,
      labels: jobLabels,
      annotations: { [ANNOTATIONS.planUri]: planUri, [ANNOTATIONS.specGeneration]: String(run.generation) },
      ownerReferences: [ownerReference(run)],
    },
    spec: {
      backoffLimit: t.backoffLimit,
      activeDeadlineSeconds: t.activeDeadlineSeconds,
      ttlSecondsAfterFinished: FINISHED_TTL_SECONDS,
      completions: t.nodes,
      parallelism: t.nodes,
      ...(indexed ? { completionMode: "Indexed" } : {}),
      podFailurePolicy: {
        rules: [
          // Exit 2 is an invalid plan: retrying cannot help.
          { action: "FailJob", onExitCodes: { containerName: TRAINER_CONTAINER, operator: "In", values: [INVALID_PLAN_EXIT_CODE] } },
          // Preemption, node drain, eviction: resume from the intra-round checkpoint without spending a retry.
          { action: "Ignore", onPodConditions: [{ type: "DisruptionTarget", status: "True" }] },
        ],
      },
      template: { metadata: { labels }, spec: podSpec },
    },
  };
}

export function buildRendezvousService(input: Omit<TrainJobInput, "planUri">): Record<string, any> | undefined {
  if (input.spec.trainer.nodes <= 1) return undefined;
  const { run, round } = input;
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: {
      name: trainServiceName(run.name, round),
      namespace: run.namespace,
      labels: trainLabels(run, round),
      ownerReferences: [ownerReference(run)],
    },
    spec: {
      clusterIP: "None",
      // Pods must resolve each other before they are Ready: rendezvous happens during start-up.
      publishNotReadyAddresses: true,
      selector: { [LABELS.run]: runLabelValue(run.name), [LABELS.round]: roundLabel(round), [LABELS.component]: "trainer" },
      ports: [{ name: "rendezvous", port: RENDEZVOUS_PORT, targetPort: RENDEZVOUS_PORT }],
    },
  };
}
