// Operator configuration from flags and environment, validated once at start-up.
import { parseArgs } from "node:util";
import { z } from "zod";
import { formatIssues, parseDuration } from "./api/common.ts";

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

/** How a setting is read: its flag (none: environment only), its variable, its default, its parse. */
type Source = {
  flag?: string;
  env: string;
  default?: string | ((env: NodeJS.ProcessEnv) => string);
  parse?: (raw: string | undefined) => unknown;
};

const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
/** A boolean flag: "true" or "false"; anything else is refused by the schema, naming the setting. */
const bool = (v: string | undefined) => (v === "true" ? true : v === "false" ? false : v);
const list = (v: string | undefined) =>
  (v ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
/** A duration flag ("6h", "90m") in ms; NaN (refused by the schema, naming the setting) when malformed. */
function duration(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  try {
    return parseDuration(v);
  } catch {
    return Number.NaN;
  }
}

/** Every setting, declared once: flags win over environment variables, then the default. */
const SOURCES: Record<keyof OperatorConfig, Source> = {
  kubeconfig: { flag: "kubeconfig", env: "KUBECONFIG" },
  namespaces: { flag: "namespaces", env: "TICCLIP_NAMESPACES", parse: list },
  logLevel: { flag: "log-level", env: "TICCLIP_LOG_LEVEL", default: "info" },
  resyncSeconds: { flag: "resync-seconds", env: "TICCLIP_RESYNC_SECONDS", default: "300", parse: num },
  watchTimeoutSeconds: {
    flag: "watch-timeout-seconds",
    env: "TICCLIP_WATCH_TIMEOUT_SECONDS",
    default: "300",
    parse: num,
  },
  concurrency: { flag: "concurrency", env: "TICCLIP_CONCURRENCY", default: "4", parse: num },
  identity: { flag: "identity", env: "POD_NAME", default: (env) => `${env.HOSTNAME ?? "local"}-${process.pid}` },
  leaderElection: {
    flag: "leader-elect",
    env: "TICCLIP_LEADER_ELECT",
    default: "true",
    parse: (v) => v !== "false",
  },
  leaseNamespace: { flag: "lease-namespace", env: "POD_NAMESPACE", default: "default" },
  leaseName: { flag: "lease-name", env: "TICCLIP_LEASE_NAME", default: "continual-clip-operator" },
  metricsAddress: { flag: "metrics-address", env: "TICCLIP_METRICS_ADDRESS", default: "127.0.0.1:0" },
  notificationsAddress: { flag: "notifications-address", env: "TICCLIP_NOTIFICATIONS_ADDRESS" },
  // Secrets only from the environment (a Secret in the Deployment), never from flags.
  notificationToken: { env: "TICCLIP_NOTIFICATION_TOKEN" },
  evaluatorImage: { flag: "evaluator-image", env: "TICCLIP_EVALUATOR_IMAGE" },
  inProcessEvaluation: {
    flag: "in-process-evaluation",
    env: "TICCLIP_IN_PROCESS_EVALUATION",
    default: "false",
    parse: bool,
  },
  trainerArchitectures: { flag: "trainer-architectures", env: "TICCLIP_TRAINER_ARCHITECTURES", parse: list },
  s3TimeoutSeconds: { flag: "s3-timeout-seconds", env: "TICCLIP_S3_TIMEOUT_SECONDS", default: "30", parse: num },
  reconcileDeadlineSeconds: {
    flag: "reconcile-deadline-seconds",
    env: "TICCLIP_RECONCILE_DEADLINE_SECONDS",
    default: "900",
    parse: num,
  },
  allowDefaultCredentials: {
    flag: "allow-default-credentials",
    env: "TICCLIP_ALLOW_DEFAULT_CREDENTIALS",
    default: "false",
    parse: bool,
  },
  sliceUnreadableAfterMs: {
    flag: "slice-unreadable-after",
    env: "TICCLIP_SLICE_UNREADABLE_AFTER",
    default: "6h",
    parse: duration,
  },
  progressIntervalMs: {
    flag: "progress-interval",
    env: "TICCLIP_PROGRESS_INTERVAL",
    default: "30s",
    parse: duration,
  },
};

const FLAGS = Object.fromEntries(
  Object.values(SOURCES).flatMap((s) => (s.flag ? [[s.flag, { type: "string" as const }]] : [])),
);

export function loadConfig(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig {
  const { values } = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false });
  const raw = Object.fromEntries(
    Object.entries(SOURCES).map(([key, s]) => {
      const given = (s.flag ? (values[s.flag] as string | undefined) : undefined) ?? env[s.env];
      const value = given ?? (typeof s.default === "function" ? s.default(env) : s.default);
      return [key, s.parse ? s.parse(value) : value];
    }),
  );
  const result = operatorConfig.safeParse(raw);
  if (!result.success) {
    throw new Error(`invalid operator configuration: ${formatIssues(result.error, { root: "config" })}`);
  }
  return result.data;
}
