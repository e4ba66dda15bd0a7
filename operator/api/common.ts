// Building blocks shared by every schema in operator/api: one definition per kind of value.
import { z } from "zod";
import { withRules } from "./cel.ts";

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
  .max(64)
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

/** A duration between min and max (Go syntax, e.g. "1s", "24h"): both enforcers share the CEL rule. */
export const boundedDuration = (min: string, max: string) =>
  withRules(duration, {
    rule: `duration(self) >= duration('${min}') && duration(self) <= duration('${max}')`,
    message: `must be between ${min} and ${max}`,
  });

export const DNS_LABEL_PATTERN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
export const dnsLabel = z
  .string()
  .min(1)
  .max(63)
  .regex(DNS_LABEL_PATTERN, "a DNS-1123 label (lowercase letters, digits, '-')");
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

/**
 * A key prefix: empty, or path segments each ending in '/'. No leading '/', no empty, '.' or '..'
 * segment: S3 keys are not paths, so "a/../b/" would be a different place than it reads.
 */
export const keyPrefix = withRules(
  z
    .string()
    .max(512)
    .regex(/^([^/\s]+\/)*$/, "empty or segments each ending in '/' (no leading '/', no '//')"),
  {
    rule: "!self.split('/').exists(s, s == '..' || s == '.')",
    message: "must not contain '.' or '..' segments",
  },
);

export const s3Uri = z
  .string()
  .max(1024)
  .regex(/^s3:\/\/[a-z0-9][a-z0-9.-]*[a-z0-9]\/.+$/, "an s3://bucket/key URI");
export const httpUrl = z
  .string()
  .max(512)
  .regex(/^https?:\/\/[^\s/]+(\/[^\s]*)?$/, "an http(s):// URL");

// Kubernetes names and labels, with the API server's own rules (k8s.io/apimachinery validation).
// Patterns avoid backslashes so they read the same in JavaScript, RE2 (OpenAPI pattern) and CEL strings.
const QUALIFIED_NAME_PART = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?";
const DNS_SUBDOMAIN_SOURCE = "[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*";

/** A label value: at most 63 characters, alphanumeric at both ends, '-', '_', '.' inside; may be empty. */
export const LABEL_VALUE_PATTERN = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
export const labelValue = z
  .string()
  .max(63)
  .regex(LABEL_VALUE_PATTERN, "a label value (at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends)");

/** A qualified name (label key, node selector key, resource name): optional DNS subdomain prefix and '/'. */
export const QUALIFIED_NAME_PATTERN = `^(${DNS_SUBDOMAIN_SOURCE}/)?${QUALIFIED_NAME_PART}$`;
/** CEL: `x` is a qualified name (the prefix of at most 253 characters). */
export const isQualifiedName = (x: string) =>
  `${x}.matches('${QUALIFIED_NAME_PATTERN}') && (!${x}.contains('/') || ${x}.indexOf('/') <= 253)`;

const MAX_MAP_ENTRIES = 64;

/**
 * A map whose keys are qualified names. Structural schemas cannot check map keys (no
 * propertyNames), so the key rule is CEL, for the API server and zod alike.
 */
export const qualifiedNameMap = <V extends z.ZodType>(value: V, what: string) =>
  withRules(
    z
      .record(z.string(), value)
      .refine((m) => Object.keys(m).length <= MAX_MAP_ENTRIES, `at most ${MAX_MAP_ENTRIES} entries`)
      .meta({ maxProperties: MAX_MAP_ENTRIES }),
    {
      rule: `self.all(k, ${isQualifiedName("k")})`,
      message: `${what} keys must be qualified names: [DNS-subdomain prefix/]name, name at most 63 of [A-Za-z0-9-_.]`,
    },
  );

export const labelMap = qualifiedNameMap(labelValue, "label");

/**
 * A container image reference as the distribution reference grammar defines it:
 * [registry[:port]/]path[:tag][@digest], path components lowercase.
 */
export const IMAGE_PATTERN =
  /^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])([.]([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(:[0-9]+)?[/])?[a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*([/][a-z0-9]+(([._]|__|[-]+)[a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$/;
export const imageReference = z
  .string()
  .min(1)
  .max(512)
  .regex(IMAGE_PATTERN, "an image reference: [registry[:port]/]name[:tag][@sha256:digest], name in lowercase");
