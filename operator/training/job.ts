// Builds a round's training Job (and, for several nodes, its headless Service) from the run's
// spec. Pure: the same inputs give the same objects, so create-if-absent is idempotent.
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import {
  ANNOTATIONS,
  CONTAINER_SECURITY_CONTEXT,
  CONTAINERS,
  LABELS,
  POD_SECURITY_CONTEXT,
  containerResources,
  ownerReference,
  podEnv,
  podFailurePolicy,
  roundLabel,
  roundLabels,
  runLabelValue,
  serviceAccount,
  trainJobName,
  trainServiceName,
  type EnvVar,
  type RunRef,
} from "../kube/objects.ts";

export const RENDEZVOUS_PORT = 29500;
// Finished trainer Jobs stay a week for `kubectl logs`; their facts are already in S3 and status.
const FINISHED_TTL_SECONDS = 7 * 24 * 3600;

export type TrainJobInput = { run: RunRef; spec: ContinualClipRunSpec; round: number; planUri: string };

function trainerEnv(input: TrainJobInput): EnvVar[] {
  const { spec, run, round } = input;
  const env = podEnv(spec.source.s3, run, round);
  const { nodes, gpusPerNode } = spec.trainer;
  if (nodes > 1) {
    // torchrun rendezvous (documented in trainer-image/README.md): index 0 is the master.
    env.push(
      { name: "MASTER_ADDR", value: `${trainJobName(run.name, round)}-0.${trainServiceName(run.name, round)}` },
      { name: "MASTER_PORT", value: String(RENDEZVOUS_PORT) },
      { name: "NNODES", value: String(nodes) },
      {
        name: "NODE_RANK",
        valueFrom: { fieldRef: { fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']" } },
      },
    );
  }
  env.push({ name: "NPROC_PER_NODE", value: String(Math.max(1, gpusPerNode)) });
  // The trainer sizes its data loader workers from the pod's CPU request (whole CPUs, rounded up;
  // 0 when the pod requests none): the request is what the pod is guaranteed, its limit may be far higher.
  env.push({
    name: "TICCLIP_CPU_REQUEST",
    valueFrom: { resourceFieldRef: { containerName: CONTAINERS.trainer, resource: "requests.cpu", divisor: "1" } },
  });
  return env;
}

export function buildTrainJob(input: TrainJobInput): Record<string, any> {
  const { run, spec, round, planUri } = input;
  const t = spec.trainer;
  const name = trainJobName(run.name, round);
  const labels = roundLabels(run, round, "trainer");
  const jobLabels = t.queueName ? { ...labels, [LABELS.kueueQueue]: t.queueName } : labels;
  const indexed = t.nodes > 1;

  const podSpec: Record<string, unknown> = {
    restartPolicy: "Never",
    terminationGracePeriodSeconds: t.terminationGracePeriodSeconds,
    securityContext: POD_SECURITY_CONTEXT,
    containers: [
      {
        name: CONTAINERS.trainer,
        image: t.image,
        ...(t.imagePullPolicy ? { imagePullPolicy: t.imagePullPolicy } : {}),
        command: ["python", "-m", "ticclip_trainer", "train", "--plan", planUri],
        env: trainerEnv(input),
        resources: containerResources(t.resources, t.gpusPerNode),
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
    ...serviceAccount(t.serviceAccountName),
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
      // Exit 2 is an invalid plan; after preemption or a drain the trainer resumes from its
      // intra-round checkpoint without spending a retry.
      podFailurePolicy: podFailurePolicy(CONTAINERS.trainer),
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
      labels: roundLabels(run, round, "trainer"),
      ownerReferences: [ownerReference(run)],
    },
    spec: {
      clusterIP: "None",
      // Pods must resolve each other before they are Ready: rendezvous happens during start-up.
      publishNotReadyAddresses: true,
      selector: {
        [LABELS.run]: runLabelValue(run.name),
        [LABELS.round]: roundLabel(round),
        [LABELS.component]: "trainer",
      },
      ports: [{ name: "rendezvous", port: RENDEZVOUS_PORT, targetPort: RENDEZVOUS_PORT }],
    },
  };
}
