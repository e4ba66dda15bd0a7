// Building blocks shared by every schema in operator/api: one definition per kind of value.
import { z } from "zod";

// Kubernetes resource.Quantity, as the API server's own OpenAPI spells it.
export const QUANTITY_PATTERN =
  "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$";

/** An int-or-string quantity such as 32, "500m" or "256Gi". */
export const quantity = z
  .union([z.int().nonnegative(), z.string().regex(new RegExp(QUANTITY_PATTERN))])
  .meta({ "x-kubernetes-int-or-string": true, description: "Kubernetes quantity, e.g. 32, 500m, 256Gi" });

/** A Go-style duration: 30s, 5m, 1h30m. */
export const duration = z
  .string()
  .regex(/^([0-9]+(ms|s|m|h))+$/, "a duration such as 30s, 5m or 1h30m");

/** Parses a Go-style duration (5m, 1h30m, 500ms) as used by spec.source.pollInterval. */
export function parseDuration(s: string): number {
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let total = 0;
  let rest = s;
  while (rest.length) {
    const m = /^([0-9]+)(ms|s|m|h)/.exec(rest);
    if (!m) throw new Error(`not a duration: ${s}`);
    total += Number(m[1]) * unit[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  if (!s.length) throw new Error("empty duration");
  return total;
}

export const DNS_LABEL_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const dnsLabel = z.string().min(1).max(63).regex(DNS_LABEL_PATTERN, "a DNS-1123 label (lowercase letters, digits, '-')");
export const dnsSubdomain = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, "a DNS-1123 subdomain");

/** S3 bucket naming rules (lowercase, 3-63 characters, no leading/trailing '.' or '-'). */
export const bucketName = z
  .string()
  .min(3)
  .max(63)
  .regex(/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/, "an S3 bucket name (lowercase letters, digits, '.', '-')");

/** A key prefix: empty, or path segments ending in '/', never starting with '/'. */
export const keyPrefix = z
  .string()
  .max(512)
  .regex(/^([^/\s][^\s]*\/)?$/, "empty or a key prefix ending in '/', not starting with '/'");

export const s3Uri = z.string().max(1024).regex(/^s3:\/\/[a-z0-9][a-z0-9.-]*[a-z0-9]\/.+$/, "an s3://bucket/key URI");
export const httpUrl = z.string().max(512).regex(/^https?:\/\/[^\s/]+(\/[^\s]*)?$/, "an http(s):// URL");

export const labelMap = z.record(z.string(), z.string());
