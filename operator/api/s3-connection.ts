// How every part of a run reaches S3: the spec fields (spec.source.s3 minus the location), the
// resolved connection the operator's client pool and S3 clients take, and the pod environment the
// trainer and evaluator Jobs read it back from. Adding a connection setting means: a field here,
// its env variable in S3_ENV, the client option in s3/client.ts, and the trainer's settings.py.
import { z } from "zod";
import { dnsSubdomain, httpUrl } from "./common.ts";

/** Path: https://host/bucket/key (MinIO, Ceph). VirtualHost: https://bucket.host/key (AWS's default). */
export const S3_ADDRESSING_STYLES = ["Path", "VirtualHost"] as const;
export type S3AddressingStyle = (typeof S3_ADDRESSING_STYLES)[number];

const secretRef = z
  .object({ name: dnsSubdomain.describe("Name of a Secret in the run's namespace.") })
  .describe("Reference to a Secret in the same namespace.");

/** The connection fields of spec.source.s3 (artifacts and promotion use the same connection). */
export const s3ConnectionFields = {
  region: z.string().min(1).max(64).default("us-east-1").describe("S3 region."),
  endpoint: httpUrl.optional().describe("Custom S3 endpoint (MinIO, Ceph); absent means AWS."),
  addressingStyle: z
    .enum(S3_ADDRESSING_STYLES)
    .optional()
    .describe(
      "Path (https://endpoint/bucket/key) or VirtualHost (https://bucket.endpoint/key). Default: Path with a custom endpoint, VirtualHost without.",
    ),
  credentialsSecretRef: secretRef
    .optional()
    .describe(
      "Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY. Required unless the operator runs with --allow-default-credentials (off by default), which lets runs use its own identity (IRSA).",
    ),
};
/** The connection part of a parsed spec.source.s3 (defaults applied). */
export type S3ConnectionSpec = {
  region: string;
  endpoint?: string | undefined;
  addressingStyle?: S3AddressingStyle | undefined;
  credentialsSecretRef?: { name: string } | undefined;
};

/** A resolved connection: what one S3 client is built from, and what the client pool keys on. */
export type S3Connection = {
  region: string;
  endpoint?: string | undefined;
  addressingStyle: S3AddressingStyle;
  /** Static keys (from a Secret); omitted means the default AWS chain (env, IRSA, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
};

/** The addressing style a connection uses: the one the spec names, else Path for custom endpoints. */
export function addressingStyleOf(s: {
  endpoint?: string | undefined;
  addressingStyle?: S3AddressingStyle | undefined;
}) {
  return s.addressingStyle ?? (s.endpoint ? "Path" : "VirtualHost");
}

/** The connection of a spec without static keys (the Secret's keys are added by s3/credentials.ts). */
export function connectionOf(spec: S3ConnectionSpec): S3Connection {
  return { region: spec.region, endpoint: spec.endpoint, addressingStyle: addressingStyleOf(spec) };
}

/** The connection as the round plan carries it (credentials never: the pod's environment has them). */
export function planConnection(spec: S3ConnectionSpec) {
  const c = connectionOf(spec);
  return { region: c.region, endpoint: c.endpoint ?? null, addressingStyle: c.addressingStyle };
}

/** The environment variables the pods of a run read the connection from (trainer settings.py, evaluator cli.ts). */
export const S3_ENV = {
  region: "AWS_REGION",
  endpoint: "S3_ENDPOINT",
  addressingStyle: "S3_ADDRESSING_STYLE",
} as const;

/** The connection as pod environment (credentials excepted: the pod references the Secret). */
export function connectionEnv(spec: S3ConnectionSpec): Record<string, string> {
  const c = connectionOf(spec);
  return {
    [S3_ENV.region]: c.region,
    ...(c.endpoint ? { [S3_ENV.endpoint]: c.endpoint } : {}),
    [S3_ENV.addressingStyle]: c.addressingStyle,
  };
}

/** The connection a pod was given (credentials from the default chain: env keys or IRSA); throws on a bad style. */
export function connectionFromEnv(env: Record<string, string | undefined>): S3Connection {
  const style = env[S3_ENV.addressingStyle] || undefined;
  const addressingStyle = S3_ADDRESSING_STYLES.find((s) => s === style);
  if (style && !addressingStyle)
    throw new Error(`${S3_ENV.addressingStyle}=${style}: expected one of ${S3_ADDRESSING_STYLES.join(", ")}`);
  const endpoint = env[S3_ENV.endpoint] || undefined;
  return {
    region: env[S3_ENV.region] || "us-east-1",
    endpoint,
    addressingStyle: addressingStyleOf({ endpoint, addressingStyle }),
  };
}
