// Maps S3 SDK failures to a small set of classes the reconciler can turn into a Degraded condition.
// Messages are sanitised: presigned URLs in errors carry credentials in their query strings.
import { sanitizeMessage } from "../observability/log.ts";

export const S3_ERROR_CLASSES = [
  "Throttled",
  "ServerError",
  "Timeout",
  "Network",
  "InvalidCredentials",
  "AccessDenied",
  "NoSuchBucket",
  "ClientError",
] as const;
export type S3ErrorClass = (typeof S3_ERROR_CLASSES)[number];

export type S3Problem = {
  errorClass: S3ErrorClass;
  /** CamelCase reason for a condition or event, e.g. S3Throttled. */
  reason: string;
  message: string;
  retryable: boolean;
  httpStatus?: number | undefined;
};

type SdkLikeError = {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
};

const THROTTLE_CODES = new Set([
  "SlowDown",
  "Throttling",
  "ThrottlingException",
  "RequestLimitExceeded",
  "TooManyRequestsException",
  "RequestThrottled",
  "TooManyRequests",
]);
const CREDENTIAL_CODES = new Set([
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "ExpiredToken",
  "InvalidToken",
  "TokenRefreshRequired",
  "CredentialsProviderError",
]);
const TIMEOUT_CODES = new Set(["TimeoutError", "RequestTimeout", "RequestTimeoutException", "ETIMEDOUT", "AbortError"]);
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "UND_ERR_SOCKET",
]);

/** Strips query strings from URLs (presigned credentials) and collapses whitespace. */
export { sanitizeMessage as sanitize };

export function classifyS3Error(err: unknown, operation?: string): S3Problem {
  // Classified once, at the adapter: the problem travels with the failure.
  if (err instanceof S3Failure) return err.problem;
  const e = (err ?? {}) as SdkLikeError;
  const code = e.Code ?? e.name ?? e.code ?? "Error";
  const status = e.$metadata?.httpStatusCode;
  const cls = classOf(code, status, e);
  const where = operation ? `${operation}: ` : "";
  const text = e.message && e.message !== code ? `${code}: ${e.message}` : code;
  return {
    errorClass: cls,
    reason: `S3${cls}`,
    message: sanitizeMessage(`${where}${text}${status ? ` (HTTP ${status})` : ""}`),
    retryable: cls !== "ClientError",
    httpStatus: status,
  };
}

function classOf(code: string, status: number | undefined, e: SdkLikeError): S3ErrorClass {
  if (THROTTLE_CODES.has(code) || status === 429 || status === 503) return "Throttled";
  if (CREDENTIAL_CODES.has(code)) return "InvalidCredentials";
  if (code === "NoSuchBucket") return "NoSuchBucket";
  if (code === "AccessDenied" || status === 403) return "AccessDenied";
  if (TIMEOUT_CODES.has(code) || status === 408 || status === 504) return "Timeout";
  if (
    NETWORK_CODES.has(code) ||
    NETWORK_CODES.has(e.code ?? "") ||
    (status === undefined && /ECONN|socket|network|fetch failed/i.test(e.message ?? ""))
  )
    return "Network";
  if (status !== undefined && status >= 500) return "ServerError";
  if (status === 401) return "InvalidCredentials";
  return status === undefined ? "Network" : "ClientError";
}

/** An S3 failure classified at the adapter boundary. */
export class S3Failure extends Error {
  readonly problem: S3Problem;
  constructor(problem: S3Problem, options?: { cause?: unknown }) {
    super(problem.message, options);
    this.name = "S3Failure";
    this.problem = problem;
  }
}

/** An object larger than a document of its kind may be: a property of the object, not a transient failure. */
export class ObjectTooLarge extends S3Failure {
  readonly size: number;
  readonly maxBytes: number;
  constructor(uri: string, size: number, maxBytes: number) {
    const message = `${uri} is ${size === Infinity ? "" : `${size} bytes, `}more than the ${maxBytes} bytes allowed`;
    super({ errorClass: "ClientError", reason: "ObjectTooLarge", message, retryable: false });
    this.name = "ObjectTooLarge";
    this.size = size;
    this.maxBytes = maxBytes;
  }
}
