// The Git credentials of spec.promotion.git.secretRef, from the data of that Secret (the kube
// adapter reads it in the run's namespace; this module never reads Secrets itself). The keys are
// those of Flux's GitRepository Secret: username and password (basic auth; a token goes in
// password), or bearerToken; optionally ca.crt.

export type GitCredentials = {
  auth?: { username: string; password: string } | { bearerToken: string } | undefined;
  /** PEM bundle trusted for the server, besides the system's roots. */
  ca?: string | undefined;
};

export type GitCredentialsResult =
  | { ok: true; credentials: GitCredentials }
  | { ok: false; reason: "SecretMissing" | "SecretKeyMissing"; message: string };

const decode = (raw: string | undefined) =>
  raw === undefined || raw === "" ? undefined : Buffer.from(raw, "base64").toString("utf8");

/** secret: the Secret's data (base64 values), or undefined when it does not exist. */
export function gitCredentialsFromSecret(
  ref: { name: string } | undefined,
  secret: { data?: Record<string, string> | undefined } | undefined,
): GitCredentialsResult {
  if (!ref) return { ok: true, credentials: {} };
  const where = `spec.promotion.git.secretRef: Secret ${ref.name}`;
  if (!secret) return { ok: false, reason: "SecretMissing", message: `${where} not found in the run's namespace` };
  const data = secret.data ?? {};
  const username = decode(data.username)?.trim();
  const password = decode(data.password)?.trim();
  const bearerToken = decode(data.bearerToken)?.trim();
  const ca = decode(data["ca.crt"]);
  const extra = ca ? { ca } : {};
  if (bearerToken) return { ok: true, credentials: { auth: { bearerToken }, ...extra } };
  if (password) return { ok: true, credentials: { auth: { username: username || "git", password }, ...extra } };
  return {
    ok: false,
    reason: "SecretKeyMissing",
    message: `${where} has neither password (with username) nor bearerToken`,
  };
}

/** The Authorization header the credentials send (preemptively: no 401 round trip per request). */
export function authorizationHeader(c: GitCredentials): Record<string, string> {
  if (!c.auth) return {};
  if ("bearerToken" in c.auth) return { authorization: `Bearer ${c.auth.bearerToken}` };
  return {
    authorization: `Basic ${Buffer.from(`${c.auth.username}:${c.auth.password}`).toString("base64")}`,
  };
}

/** Every secret string of the credentials, to scrub from any text that leaves the adapter. */
export function secretStrings(c: GitCredentials): string[] {
  if (!c.auth) return [];
  const header = Object.values(authorizationHeader(c));
  const values = "bearerToken" in c.auth ? [c.auth.bearerToken] : [c.auth.password];
  return [...values, ...header, ...header.map((h) => h.split(" ")[1]!)].filter((s) => s.length >= 4);
}
