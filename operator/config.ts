// Operator configuration from flags and environment, validated once at start-up.
import { parseArgs } from "node:util";
import { z } from "zod";
import { parseDuration } from "./api/common.ts";

export const operatorConfig = z
  .object({
    kubeconfig: z.string().optional().describe("Path to a kubeconfig; omitted means in-cluster config or $KUBECONFIG."),
    namespaces: z
      .array(z.string().regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, "a namespace name"))
      .describe("Namespaces to watch; empty means all."),
    logLevel: z.enum(["error", "warn", "info", "debug"]),
    resyncSeconds: z.number().int().min(10).max(86_400),
    watchTimeoutSeconds: z.number().int().min(10).max(3600),
    concurrency: z.number().int().min(1).max(64),
    identity: z.string().min(1),
    leaderElection: z.boolean(),
    leaseNamespace: z.string().min(1),
    leaseName: z.string().min(1),
    metricsAddress: z.string().regex(/^[^:]*:\d+$/, "host:port or :port"),
    notificationsAddress: z
      .string()
      .regex(/^[^:]*:\d+$/, "host:port or :port")
      .optional(),
    notificationToken: z.string().min(16, "at least 16 characters").optional(),
    evaluatorImage: z.string().min(1).optional().describe("Image of evaluation Jobs (this operator's image)."),
    inProcessEvaluation: z
      .boolean()
      .describe(
        "Whether runs may be evaluated inside this process (runner.mode InProcess, or every run without --evaluator-image). Off by default.",
      ),
    trainerArchitectures: z
      .array(z.string().min(1))
      .describe("Architectures the trainer image ships (open_clip names and its own configs); empty skips the check."),
    s3TimeoutSeconds: z
      .number()
      .int()
      .min(1)
      .max(3600)
      .describe("Deadline of one S3 call until its response, retries included."),
    reconcileDeadlineSeconds: z
      .number()
      .int()
      .min(1)
      .max(86_400)
      .describe("A reconcile still running after this frees its worker and, until it ends, fails /healthz."),
    allowDefaultCredentials: z
      .boolean()
      .describe(
        "Let runs without spec.source.s3.credentialsSecretRef use the operator's own cloud identity (IRSA, Pod Identity, instance role). Off: such runs are Stalled.",
      ),
    sliceUnreadableAfterMs: z
      .number()
      .int()
      .min(60_000, "at least 1m")
      .max(30 * 86_400_000, "at most 720h")
      .describe(
        "How long a slice folder may fail with transient S3 errors (5xx, throttling, timeouts) before it is an invalid slice; until then it stays pending and later slices wait.",
      ),
    progressIntervalMs: z
      .number()
      .int()
      .min(1000, "at least 1s")
      .max(3_600_000, "at most 1h")
      .describe(
        "How often a training round is looked at and its progress.json read, at most (the trainer writes one every 30 s by default).",
      ),
  })
  .refine((c) => !c.notificationsAddress || c.notificationToken, {
    message: "the notifications endpoint needs a bearer token (TICCLIP_NOTIFICATION_TOKEN)",
    path: ["notificationToken"],
  })
  .refine((c) => c.evaluatorImage || c.inProcessEvaluation, {
    message: "rounds need an evaluator: --evaluator-image (evaluation Jobs) or --in-process-evaluation true",
    path: ["evaluatorImage"],
  });
export type OperatorConfig = z.infer<typeof operatorConfig>;

const FLAGS = {
  kubeconfig: { type: "string" },
  namespaces: { type: "string" },
  "log-level": { type: "string" },
  "resync-seconds": { type: "string" },
  "watch-timeout-seconds": { type: "string" },
  concurrency: { type: "string" },
  identity: { type: "string" },
  "leader-elect": { type: "string" },
  "lease-namespace": { type: "string" },
  "lease-name": { type: "string" },
  "metrics-address": { type: "string" },
  "notifications-address": { type: "string" },
  "evaluator-image": { type: "string" },
  "in-process-evaluation": { type: "string" },
  "s3-timeout-seconds": { type: "string" },
  "trainer-architectures": { type: "string" },
  "reconcile-deadline-seconds": { type: "string" },
  "slice-unreadable-after": { type: "string" },
  "progress-interval": { type: "string" },
  "allow-default-credentials": { type: "string" },
} as const;

/** A boolean flag: "true" or "false"; anything else is refused by the schema, naming the setting. */
function bool(v: string): boolean {
  return v === "true" ? true : v === "false" ? false : (v as unknown as boolean);
}

/** A duration flag ("6h", "90m") in ms; NaN (refused by the schema, naming the setting) when malformed. */
function duration(v: string): number {
  try {
    return parseDuration(v);
  } catch {
    return Number.NaN;
  }
}

/** Flags win over environment variables (TICCLIP_NAMESPACES, TICCLIP_LOG_LEVEL, ...). */
export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig {
  const { values } = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false });
  const pick = (flag: keyof typeof FLAGS, envName: string): string | undefined => values[flag] ?? env[envName];
  const namespaces = pick("namespaces", "TICCLIP_NAMESPACES");
  const num = (v: string | undefined, fallback: number) => (v === undefined ? fallback : Number(v));
  const result = operatorConfig.safeParse({
    kubeconfig: pick("kubeconfig", "KUBECONFIG"),
    namespaces: namespaces
      ? namespaces
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean)
      : [],
    logLevel: pick("log-level", "TICCLIP_LOG_LEVEL") ?? "info",
    resyncSeconds: num(pick("resync-seconds", "TICCLIP_RESYNC_SECONDS"), 300),
    watchTimeoutSeconds: num(pick("watch-timeout-seconds", "TICCLIP_WATCH_TIMEOUT_SECONDS"), 300),
    concurrency: num(pick("concurrency", "TICCLIP_CONCURRENCY"), 4),
    identity: pick("identity", "POD_NAME") ?? `${env.HOSTNAME ?? "local"}-${process.pid}`,
    leaderElection: (pick("leader-elect", "TICCLIP_LEADER_ELECT") ?? "true") !== "false",
    leaseNamespace: pick("lease-namespace", "POD_NAMESPACE") ?? "default",
    leaseName: pick("lease-name", "TICCLIP_LEASE_NAME") ?? "continual-clip-operator",
    metricsAddress: pick("metrics-address", "TICCLIP_METRICS_ADDRESS") ?? "127.0.0.1:0",
    notificationsAddress: pick("notifications-address", "TICCLIP_NOTIFICATIONS_ADDRESS"),
    // Secrets only from the environment (a Secret in the Deployment), never from flags.
    notificationToken: env.TICCLIP_NOTIFICATION_TOKEN,
    evaluatorImage: pick("evaluator-image", "TICCLIP_EVALUATOR_IMAGE"),
    inProcessEvaluation: bool(pick("in-process-evaluation", "TICCLIP_IN_PROCESS_EVALUATION") ?? "false"),
    trainerArchitectures: (pick("trainer-architectures", "TICCLIP_TRAINER_ARCHITECTURES") ?? "")
      .split(",")
      .map((a) => a.trim())
      .filter(Boolean),
    s3TimeoutSeconds: num(pick("s3-timeout-seconds", "TICCLIP_S3_TIMEOUT_SECONDS"), 30),
    reconcileDeadlineSeconds: num(pick("reconcile-deadline-seconds", "TICCLIP_RECONCILE_DEADLINE_SECONDS"), 900),
    allowDefaultCredentials: bool(pick("allow-default-credentials", "TICCLIP_ALLOW_DEFAULT_CREDENTIALS") ?? "false"),
    sliceUnreadableAfterMs: duration(pick("slice-unreadable-after", "TICCLIP_SLICE_UNREADABLE_AFTER") ?? "6h"),
    progressIntervalMs: duration(pick("progress-interval", "TICCLIP_PROGRESS_INTERVAL") ?? "30s"),
  });
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join(".") || "config"}: ${i.message}`);
    throw new Error(`invalid operator configuration: ${problems.join("; ")}`);
  }
  return result.data;
}
