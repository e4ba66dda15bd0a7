// Builds the S3 connection of a run from its spec and, when credentialsSecretRef is set, from the
// data of that Secret. The kube adapter reads the Secret in the run's own namespace and passes its
// data here; this module never reads Secrets itself.
import { connectionOf, type S3Connection, type S3ConnectionSpec } from "../api/s3-connection.ts";

export const ACCESS_KEY_ID = "AWS_ACCESS_KEY_ID";
export const SECRET_ACCESS_KEY = "AWS_SECRET_ACCESS_KEY";

export type ConnectionResult =
  | { ok: true; connection: S3Connection }
  | { ok: false; reason: "SecretMissing" | "SecretKeyMissing" | "SecretValueInvalid"; message: string };

/**
 * secret: the Secret's `data` (base64 values, as the API returns them), or undefined when the
 * Secret does not exist. Ignored when the spec names no Secret (default AWS chain, e.g. IRSA).
 */
export function connectionFromSecret(
  spec: S3ConnectionSpec,
  secret: { data?: Record<string, string> | undefined } | undefined,
): ConnectionResult {
  const base = connectionOf(spec);
  const ref = spec.credentialsSecretRef;
  if (!ref) return { ok: true, connection: base };
  if (!secret)
    return {
      ok: false,
      reason: "SecretMissing",
      message: `spec.source.s3.credentialsSecretRef: Secret ${ref.name} not found in the run's namespace`,
    };
  const values: Record<string, string> = {};
  for (const name of [ACCESS_KEY_ID, SECRET_ACCESS_KEY]) {
    const raw = secret.data?.[name];
    if (raw === undefined || raw === "") {
      return {
        ok: false,
        reason: "SecretKeyMissing",
        message: `spec.source.s3.credentialsSecretRef: Secret ${ref.name} has no key ${name}`,
      };
    }
    const decoded = Buffer.from(raw, "base64").toString("utf-8").trim();
    if (!looksBase64(raw) || !/^[\x21-\x7e]+$/.test(decoded)) {
      return {
        ok: false,
        reason: "SecretValueInvalid",
        message: `spec.source.s3.credentialsSecretRef: Secret ${ref.name} key ${name} is not base64 of a printable value`,
      };
    }
    values[name] = decoded;
  }
  return {
    ok: true,
    connection: {
      ...base,
      credentials: { accessKeyId: values[ACCESS_KEY_ID]!, secretAccessKey: values[SECRET_ACCESS_KEY]! },
    },
  };
}

function looksBase64(s: string): boolean {
  return /^[A-Za-z0-9+/]*={0,2}$/.test(s.replace(/\s/g, ""));
}
