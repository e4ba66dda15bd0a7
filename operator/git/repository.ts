// The Git adapter: the only module that imports the Git library (isomorphic-git, pure JavaScript:
// no git binary in the operator image). One sync fetches the branch tip (depth 1, one branch) into
// an in-memory bare repository, reads the files, asks the caller what they should say, and when
// that differs commits on top of the tip and pushes without force. A push refused because the
// branch moved (another writer) is fetched, re-applied and pushed again with backoff; a file the
// caller cannot update is returned as its reason. Credentials go only in the Authorization header
// and are scrubbed from every message that leaves this module.
import git, { Errors } from "isomorphic-git";
import { authorizationHeader, secretStrings, type GitCredentials } from "./credentials.ts";
import { httpClient } from "./http.ts";
import { MemoryFs } from "./memory-fs.ts";

/** What the files should say, given what they say at the branch tip (undefined: absent). */
export type GitFileChange =
  | { kind: "unchanged" }
  | { kind: "write"; files: { path: string; content: string }[] }
  | { kind: "problem"; reason: string; field: string; message: string };

export type GitSyncRequest = {
  url: string;
  /** The branch the commit is made on top of. */
  branch: string;
  /** Where the commit is pushed (default: branch); created from branch when it does not exist. */
  pushBranch?: string | undefined;
  paths: readonly string[];
  plan: (files: ReadonlyMap<string, string | undefined>) => GitFileChange;
  message: string;
  author: { name: string; email: string };
  credentials: GitCredentials;
  signal?: AbortSignal | undefined;
};

/** field: the request input at fault (url, branch, pushBranch, secretRef, or what plan named). */
export type GitSyncOutcome =
  | {
      ok: true;
      /** The commit pushed; undefined when the files already said it. */
      commit: string | undefined;
      /** The pushed branch's tip (or the tip read, when nothing was pushed). */
      head: string;
      branch: string;
      attempts: number;
      requests: number;
    }
  | { ok: false; reason: string; field: string; message: string; attempts: number; requests: number };

export type GitSyncOptions = {
  /** Fetch-apply-push attempts while the branch keeps moving under us. */
  maxAttempts?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
  /** One sync, retries included. */
  deadlineMs?: number;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
  /** Every HTTP request (operation: fetch or push). */
  onRequest?: (operation: "fetch" | "push") => void;
};

export type GitAccess = { sync(request: GitSyncRequest): Promise<GitSyncOutcome> };

type Failure = { reason: string; field: string; message: string };
class SyncFailure extends Error {
  readonly failure: Failure;
  constructor(f: Failure) {
    super(f.message);
    this.failure = f;
  }
}

const TLS_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "EPIPE",
]);

/** A failure of one Git operation, named for the user: which input is at fault and why. */
export function classifyGitError(err: unknown, stage: "fetch" | "push", req: GitSyncRequest, branch: string): Failure {
  const e = err as { code?: string; name?: string; message?: string; data?: Record<string, unknown>; cause?: unknown };
  if (err instanceof SyncFailure) return err.failure;
  if (e?.code === Errors.HttpError.code) {
    const status = Number(e.data?.statusCode);
    const text = `HTTP ${status} ${String(e.data?.statusMessage ?? "")}`.trim();
    if (status === 401 || status === 403) {
      const message = !req.credentials.auth
        ? `the Git server refused to ${stage} without credentials (${text}): set secretRef`
        : status === 403 && stage === "push"
          ? `the Git server refused to let these credentials push to ${branch} (${text})`
          : `the Git server refused the credentials to ${stage} (${text})`;
      return { reason: "GitAuthFailed", field: "secretRef", message };
    }
    if (status === 404)
      return { reason: "GitRepositoryNotFound", field: "url", message: `no repository there (${text})` };
    return { reason: "GitServerError", field: "url", message: `the Git server answered ${text} to ${stage}` };
  }
  if (e?.code === Errors.NotFoundError.code && stage === "fetch") {
    return {
      reason: "GitBranchNotFound",
      field: "branch",
      message: `branch ${branch} does not exist in the repository`,
    };
  }
  if (e?.name === "AbortError" || e?.name === "TimeoutError") {
    return { reason: "GitTimeout", field: "url", message: `${stage} did not finish in time` };
  }
  const code = e?.code ?? (e?.cause as { code?: string } | undefined)?.code;
  if (code && TLS_CODES.has(code)) {
    return {
      reason: "GitTLSFailed",
      field: "url",
      message: `the server's certificate is not trusted (${code}): add its CA as ca.crt to the Secret of secretRef`,
    };
  }
  if ((code && NETWORK_CODES.has(code)) || /^(connecting to|.* sent nothing for)/.test(e?.message ?? "")) {
    return { reason: "GitUnreachable", field: "url", message: `${stage}: ${e?.message ?? code}` };
  }
  if (
    e?.code === Errors.SmartHttpError.code ||
    e?.code === Errors.EmptyServerResponseError.code ||
    e?.code === Errors.ParseError.code
  ) {
    return {
      reason: "GitServerError",
      field: "url",
      message: `the answer to ${stage} is not Git smart HTTP: ${e.message}`,
    };
  }
  return { reason: "GitError", field: "url", message: `${stage}: ${e?.message ?? String(err)}` };
}

/** Removes every secret string and any user:password@ from a text that leaves the adapter. */
export function scrub(text: string, secrets: readonly string[]): string {
  let out = text.replace(/(https?:\/\/)[^/@\s]*@/g, "$1");
  for (const s of secrets) out = out.split(s).join("***");
  return out;
}

const decoder = new TextDecoder("utf-8", { fatal: true });

export class GitRepositories implements GitAccess {
  readonly #o: Required<Omit<GitSyncOptions, "onRequest">> & Pick<GitSyncOptions, "onRequest">;

  constructor(o: GitSyncOptions = {}) {
    this.#o = {
      maxAttempts: o.maxAttempts ?? 5,
      backoffMs: o.backoffMs ?? 250,
      maxBackoffMs: o.maxBackoffMs ?? 5000,
      deadlineMs: o.deadlineMs ?? 120_000,
      now: o.now ?? (() => new Date()),
      sleep: o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms))),
      onRequest: o.onRequest,
    };
  }

  async sync(req: GitSyncRequest): Promise<GitSyncOutcome> {
    const secrets = secretStrings(req.credentials);
    const signal = AbortSignal.any([AbortSignal.timeout(this.#o.deadlineMs), ...(req.signal ? [req.signal] : [])]);
    let requests = 0;
    let attempts = 0;
    let refused: { tip: string; message: string } | undefined;
    const pushBranch = req.pushBranch ?? req.branch;
    try {
      for (;;) {
        attempts++;
        const result = await this.#attempt(req, pushBranch, signal, (op) => {
          requests++;
          this.#o.onRequest?.(op);
        });
        if (result.kind === "done") {
          return { ok: true, commit: result.commit, head: result.head, branch: pushBranch, attempts, requests };
        }
        if (result.kind === "failed") {
          return { ok: false, ...result.failure, message: scrub(result.failure.message, secrets), attempts, requests };
        }
        // The push was refused. A branch that did not move was refused for another reason (a
        // protected branch, a hook): say so rather than retry.
        if (refused && refused.tip === result.tip && result.serverRefused) {
          return {
            ok: false,
            reason: "GitPushRejected",
            field: "pushBranch",
            message: scrub(`the Git server refused the push to ${pushBranch}: ${result.message}`, secrets),
            attempts,
            requests,
          };
        }
        refused = { tip: result.tip, message: result.message };
        if (attempts >= this.#o.maxAttempts) {
          return {
            ok: false,
            reason: "GitPushRejected",
            field: "pushBranch",
            message: scrub(
              `${pushBranch} moved under every one of ${attempts} attempts (${result.message}); retried later`,
              secrets,
            ),
            attempts,
            requests,
          };
        }
        const backoff = Math.min(this.#o.maxBackoffMs, this.#o.backoffMs * 2 ** (attempts - 1));
        await this.#o.sleep(backoff / 2 + Math.random() * (backoff / 2));
        signal.throwIfAborted();
      }
    } catch (err) {
      const f = classifyGitError(err, "fetch", req, pushBranch);
      return { ok: false, ...f, message: scrub(f.message, secrets), attempts, requests };
    }
  }

  /**
   * One fetch-apply-push: a bare in-memory clone, the tip of the push branch (or of the branch it
   * starts from), the files as they are there, the request's plan for them, a commit, a push.
   */
  async #attempt(
    req: GitSyncRequest,
    pushBranch: string,
    signal: AbortSignal,
    count: (op: "fetch" | "push") => void,
  ): Promise<Attempt> {
    const clone: Clone = {
      fs: new MemoryFs(),
      gitdir: "/repo.git",
      headers: authorizationHeader(req.credentials),
      http: (op) => httpClient({ ca: req.credentials.ca, signal, onRequest: () => count(op) }),
    };
    await git.init({ fs: clone.fs, gitdir: clone.gitdir, bare: true });
    await git.addRemote({ fs: clone.fs, gitdir: clone.gitdir, remote: "origin", url: req.url });
    // The push branch carries earlier unmerged commits of ours: build on it when it exists.
    let tip = pushBranch !== req.branch ? await fetchTip(clone, req, pushBranch) : undefined;
    tip ??= await fetchTip(clone, req, req.branch);
    if (!tip) {
      return {
        kind: "failed",
        failure: {
          reason: "GitBranchNotFound",
          field: "branch",
          message: `branch ${req.branch} does not exist in the repository`,
        },
      };
    }
    const files = new Map<string, string | undefined>();
    for (const path of req.paths) files.set(path, await readText(clone.fs, clone.gitdir, tip, path));
    const change = req.plan(files);
    if (change.kind === "unchanged") return { kind: "done", commit: undefined, head: tip };
    if (change.kind === "problem") return { kind: "failed", failure: change };
    const commit = await commitOnTip(clone, req, tip, change.files, this.#o.now());
    await git.writeRef({
      fs: clone.fs,
      gitdir: clone.gitdir,
      ref: `refs/heads/${pushBranch}`,
      value: commit,
      force: true,
    });
    return push(clone, req, pushBranch, tip, commit);
  }
}

/** How one attempt ended: pushed (or nothing to push), failed for good, or refused (the branch moved, or the server said no). */
type Attempt =
  | { kind: "done"; commit: string | undefined; head: string }
  | { kind: "failed"; failure: Failure }
  | { kind: "refused"; tip: string; message: string; serverRefused: boolean };

/** A bare in-memory clone of the remote "origin" for one attempt, with the request's credentials. */
type Clone = {
  fs: MemoryFs;
  gitdir: string;
  headers: Record<string, string>;
  http: (op: "fetch" | "push") => ReturnType<typeof httpClient>;
};

/** What every fetch and push of a clone passes: its fs, an HTTP client counting `op`, origin and the credentials. */
const origin = (c: Clone, op: "fetch" | "push") => ({
  fs: c.fs,
  http: c.http(op),
  gitdir: c.gitdir,
  remote: "origin",
  headers: c.headers,
});

/** The tip of a remote branch (one commit deep), or undefined when the branch does not exist. */
async function fetchTip(c: Clone, req: GitSyncRequest, ref: string): Promise<string | undefined> {
  try {
    const r = await git.fetch({
      ...origin(c, "fetch"),
      ref,
      remoteRef: ref,
      singleBranch: true,
      depth: 1,
      tags: false,
    });
    return r.fetchHead ?? undefined;
  } catch (err) {
    if ((err as { code?: string }).code === Errors.NotFoundError.code) return undefined;
    throw new SyncFailure(classifyGitError(err, "fetch", req, ref));
  }
}

/** A commit on top of tip with the files written (folders created), by the request's author at `now`. */
async function commitOnTip(
  c: Clone,
  req: GitSyncRequest,
  tip: string,
  files: readonly { path: string; content: string }[],
  now: Date,
): Promise<string> {
  const { fs, gitdir } = c;
  const { tree } = await git.readCommit({ fs, gitdir, oid: tip }).then((x) => x.commit);
  let root = tree;
  for (const f of files) {
    const blob = await git.writeBlob({ fs, gitdir, blob: new TextEncoder().encode(f.content) });
    root = await writePath(fs, gitdir, root, f.path.split("/"), blob);
  }
  const when = { timestamp: Math.floor(now.getTime() / 1000), timezoneOffset: 0 };
  const person = { name: req.author.name, email: req.author.email, ...when };
  return git.writeCommit({
    fs,
    gitdir,
    commit: {
      message: req.message.endsWith("\n") ? req.message : `${req.message}\n`,
      tree: root,
      parent: [tip],
      author: person,
      committer: person,
    },
  });
}

/** Pushes the push branch: done, refused (not a fast-forward, or the server's hook or protection), or failed. */
async function push(c: Clone, req: GitSyncRequest, pushBranch: string, tip: string, commit: string): Promise<Attempt> {
  try {
    const r = await git.push({ ...origin(c, "push"), ref: pushBranch, remoteRef: pushBranch });
    if (!r.ok || r.error) return { kind: "refused", tip, message: String(r.error ?? "refused"), serverRefused: true };
    return { kind: "done", commit, head: commit };
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === Errors.PushRejectedError.code) {
      return { kind: "refused", tip, message: "not a fast-forward: the branch moved", serverRefused: false };
    }
    if (code === Errors.GitPushError.code) {
      const data = (err as { data?: { result?: { refs?: Record<string, { error?: string }> } } }).data;
      const why = Object.values(data?.result?.refs ?? {})
        .map((x) => x.error)
        .filter(Boolean)
        .join("; ");
      return { kind: "refused", tip, message: why || "refused", serverRefused: true };
    }
    return { kind: "failed", failure: classifyGitError(err, "push", req, pushBranch) };
  }
}

async function readText(fs: MemoryFs, gitdir: string, oid: string, filepath: string): Promise<string | undefined> {
  try {
    const { blob } = await git.readBlob({ fs, gitdir, oid, filepath });
    return decoder.decode(blob);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === Errors.NotFoundError.code) return undefined;
    if (code === Errors.ObjectTypeError.code || err instanceof TypeError) {
      throw new SyncFailure({
        reason: "GitFileUnparseable",
        field: "path",
        message: `${filepath} is not a UTF-8 text file`,
      });
    }
    throw err;
  }
}

/** Writes blob at path under tree (creating folders), and returns the new root tree. */
async function writePath(
  fs: MemoryFs,
  gitdir: string,
  treeOid: string | undefined,
  path: string[],
  blob: string,
): Promise<string> {
  const entries = treeOid ? (await git.readTree({ fs, gitdir, oid: treeOid })).tree : [];
  const [name, ...rest] = path as [string, ...string[]];
  const existing = entries.find((e) => e.path === name);
  const entry = rest.length
    ? {
        mode: "040000",
        path: name,
        type: "tree" as const,
        oid: await writePath(fs, gitdir, existing?.type === "tree" ? existing.oid : undefined, rest, blob),
      }
    : { mode: existing?.type === "blob" ? existing.mode : "100644", path: name, type: "blob" as const, oid: blob };
  return git.writeTree({ fs, gitdir, tree: [...entries.filter((e) => e.path !== name), entry] });
}
