// Maps client-node errors to what callers branch on. Only kube/ inspects ApiException.
export function statusCode(err: unknown): number | undefined {
  if (typeof err === "object" && err !== null && "code" in err && typeof (err as { code: unknown }).code === "number") {
    return (err as { code: number }).code;
  }
  // client-node's Watch reports HTTP failures as Error with statusCode.
  if (
    typeof err === "object" &&
    err !== null &&
    "statusCode" in err &&
    typeof (err as { statusCode: unknown }).statusCode === "number"
  ) {
    return (err as { statusCode: number }).statusCode;
  }
  return undefined;
}
export const isNotFound = (err: unknown) => statusCode(err) === 404;
export const isConflict = (err: unknown) => statusCode(err) === 409;
export const isGone = (err: unknown) => statusCode(err) === 410;

/** The API server refused an object (400, 403, 422): retrying the same object cannot help. */
export class ObjectRejected extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = "ObjectRejected";
    this.status = status;
  }
}

/** An ObjectRejected with the API server's own message, or undefined when err is not a refusal. */
export function rejection(err: unknown, what: string): ObjectRejected | undefined {
  const status = statusCode(err);
  if (status !== 400 && status !== 403 && status !== 422) return undefined;
  const body = (err as { body?: unknown }).body;
  let detail: string | undefined;
  try {
    detail = (typeof body === "string" ? JSON.parse(body) : body)?.message;
  } catch {
    detail = typeof body === "string" ? body : undefined;
  }
  return new ObjectRejected(status, `${what}: ${detail ?? (err as Error).message ?? `HTTP ${status}`}`);
}
