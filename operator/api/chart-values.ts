// The Helm chart's values: the only place their shape is written. npm run gen writes
// charts/continual-clip-operator/values.schema.json from it, so helm install/upgrade/lint/template
// reject a misspelt or mistyped value with the field's path.
import { z } from "zod";

const k8sName = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
  .max(63);
const quantity = z.union([z.string().regex(/^[0-9.]+([eE][0-9]+|[numkKMGTPE]i?)?$/), z.number()]);
const duration = z
  .string()
  .regex(/^([0-9]+(ms|s|m|h))+$/)
  .describe("Prometheus duration, e.g. 15m");
const port = z.int().min(1).max(65535);
const labels = z.record(z.string(), z.string());
const resourceList = z.strictObject({ cpu: quantity.optional(), memory: quantity.optional() }).catchall(quantity);

export const chartValues = z.strictObject({
  image: z.strictObject({
    repository: z.string().min(1),
    tag: z.string().describe("Defaults to the chart's appVersion when empty."),
    pullPolicy: z.enum(["Always", "IfNotPresent", "Never"]),
  }),
  imagePullSecrets: z.array(z.strictObject({ name: k8sName })),
  watchNamespaces: z
    .array(k8sName)
    .describe("Namespaces to reconcile (a Role in each); empty: the release namespace only."),
  watchAllNamespaces: z
    .boolean()
    .describe("Reconcile every namespace through a ClusterRole: Secret get, ConfigMap get/create/update everywhere."),
  replicas: z.int().min(1),
  logLevel: z.enum(["error", "warn", "info", "debug"]),
  resyncSeconds: z.int().min(10),
  concurrency: z.int().min(1).max(64),
  allowDefaultCredentials: z
    .boolean()
    .describe(
      "--allow-default-credentials: runs without spec.source.s3.credentialsSecretRef act with the operator's own cloud identity (IRSA, Pod Identity, instance role). Off: they are Stalled.",
    ),
  sliceUnreadableAfter: z
    .string()
    .regex(/^([0-9]+(ms|s|m|h))+$/)
    .describe(
      "--slice-unreadable-after: how long a slice folder may fail with transient S3 errors before it is an invalid slice (at least 1m).",
    ),
  progressInterval: z
    .string()
    .regex(/^([0-9]+(ms|s|m|h))+$/)
    .describe(
      "--progress-interval: how often the operator reads a training round's progress.json at most (1s to 1h; idle runs read nothing).",
    ),
  metrics: z.strictObject({
    port,
    serviceMonitor: z.strictObject({ enabled: z.boolean(), interval: duration }),
  }),
  prometheusRule: z.strictObject({
    enabled: z.boolean(),
    labels,
    missedPolls: z.int().min(1).describe("Poll intervals without a successful S3 poll before NoSuccessfulPoll fires."),
    rejectedRounds: z.int().min(1).describe("Consecutive rejected rounds before NoPromotion fires."),
    for: duration,
  }),
  dashboard: z.strictObject({ enabled: z.boolean(), labels }),
  notifications: z.strictObject({
    enabled: z.boolean(),
    port,
    existingSecret: z.string(),
    token: z.string(),
  }),
  inProcessEvaluation: z
    .boolean()
    .describe("Let runs ask to be evaluated inside the operator (runner.mode InProcess): off, evaluation Jobs only."),
  resources: z.strictObject({ requests: resourceList.optional(), limits: resourceList.optional() }),
  nodeSelector: labels,
  tolerations: z.array(z.record(z.string(), z.unknown())),
  affinity: z.record(z.string(), z.unknown()),
  podAnnotations: labels,
});
export type ChartValues = z.infer<typeof chartValues>;
