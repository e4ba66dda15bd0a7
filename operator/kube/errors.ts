// Maps client-node errors to what callers branch on. Only kube/ inspects ApiException.
export function statusCode(err: unknown): number | undefined {
  if (typeof err === "object" && err !== null && "code" in err && typeof (err as { code: unknown }).code === "number") {
    return (err as { code: number }).code;
  }
  // client-node's Watch reports HTTP failures as Error with statusCode.
  if (typeof err === "object" && err !== null && "statusCode" in err && typeof (err as { statusCode: unknown }).statusCode === "number") {
    return (err as { statusCode: number }).statusCode;
  }
  return undefined;
}
export const isNotFound = (err: unknown) => statusCode(err) === 404;
export const isConflict = (err: unknown) => statusCode(err) === 409;
export const isGone = (err: unknown) => statusCode(err) === 410;
