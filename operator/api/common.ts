// Building blocks shared by every schema in operator/api: one definition per kind of value.
import { z } from "zod";
import { withRules } from "./cel.ts";

// Kubernetes resource.Quantity, as the API server's own OpenAPI spells it.
export const QUANTITY_PATTERN =
  "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$";

/** An int-or-string quantity such as 32, "500m" or "256Gi". */
export const quantity = z
  .union([z.int().nonnegative(), z.string().max(64).regex(new RegExp(QUANTITY_PATTERN))])
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

// Patterns are read by two engines: JavaScript here and RE2 (Go) in the API server. They differ on
// `\s` (JavaScript's includes \v, NBSP and the Unicode spaces, RE2's only [\t\n\f\r ]) and on `.`
// (JavaScript's excludes \r, U+2028 and U+2029, RE2's only \n), so patterns spell character
// ranges instead; test/unit/api/patterns.test.ts fails on a construct the two read differently.
// biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII controls are the characters refused
const SEGMENT = /^([^/\x00-\x20\x7f]+\/)*$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII controls are the characters refused
const S3_URI = /^s3:\/\/[a-z0-9][a-z0-9.-]*[a-z0-9]\/[^\x00-\x1f\x7f]+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII controls are the characters refused
const HTTP_URL = /^https?:\/\/[^/\x00-\x20\x7f]+(\/[^\x00-\x20\x7f]*)?$/;

/**
 * A key prefix: empty, or path segments each ending in '/'. No leading '/', no empty, '.' or '..'
 * segment: S3 keys are not paths, so "a/../b/" would be a different place than it reads. No spaces
 * or control characters.
 */
export const keyPrefix = withRules(
  z.string().max(512).regex(SEGMENT, "empty or segments each ending in '/' (no leading '/', no '//', no spaces)"),
  {
    rule: "!self.split('/').exists(s, s == '..' || s == '.')",
    message: "must not contain '.' or '..' segments",
  },
);

export const s3Uri = z.string().max(1024).regex(S3_URI, "an s3://bucket/key URI");
/** An http(s) URL without credentials: a key in a manifest is a key in Git. */
export const httpUrl = withRules(z.string().max(512).regex(HTTP_URL, "an http(s):// URL"), {
  rule: "!self.matches('^[a-z]+://[^/]*@')",
  message: "must not carry credentials (user:password@host): keys belong in the Secret of credentialsSecretRef",
});

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

/** A qualified name as a value (a label key, a topology key), as the API server's ValidateLabelName. */
export const qualifiedName = withRules(z.string().min(1).max(317), {
  rule: isQualifiedName("self"),
  message: "must be a qualified name: [DNS-subdomain prefix/]name, name at most 63 of [A-Za-z0-9-_.]",
});

const MAX_MAP_ENTRIES = 64;

/**
 * A map whose keys are qualified names. Structural schemas cannot check map keys (no
 * propertyNames), so the key rule is CEL, for the API server and zod alike.
 */
export const qualifiedNameMap = <V extends z.ZodType>(value: V, what: string, max = MAX_MAP_ENTRIES) =>
  withRules(
    z
      .record(z.string(), value)
      .refine((m) => Object.keys(m).length <= max, `at most ${max} entries`)
      .meta({ maxProperties: max }),
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

/** A prefix URI with its trailing slash: s3://b/p and s3://b/p/ name the same folder. */
export const withSlash = (uri: string) => (uri.endsWith("/") ? uri : uri + "/");

/** An RFC 3339 time to the second (metav1.Time, status, messages): 2026-01-01T00:00:00Z. */
export const isoSeconds = (t: Date | number) => new Date(t).toISOString().replace(/\.\d{3}Z$/, "Z");

/**
 * Zod issues as `path: message; path: message` for status, events and errors. `prefix` goes before
 * each path (spec.), `root` names an empty path, past `limit` issues the rest are counted.
 */
export function formatIssues(
  error: { issues: ReadonlyArray<{ path: PropertyKey[]; message: string }> },
  o: { prefix?: string; root?: string; limit?: number } = {},
): string {
  const { prefix = "", root = "(root)", limit = Number.POSITIVE_INFINITY } = o;
  const parts = error.issues
    .slice(0, limit)
    .map((i) => `${i.path.length ? prefix + i.path.map(String).join(".") : root}: ${i.message}`);
  const more = error.issues.length - limit;
  return parts.join("; ") + (more > 0 ? `; and ${more} more` : "");
}
