// A real Git server on loopback for the GitOps tests: Git's own smart-HTTP backend (`git
// http-backend`, the CGI program of Debian's git package) behind a small Node HTTPS server that
// asks for basic auth, as a Git host does. Repositories are bare repositories in a temporary
// folder; the test side reads and writes them with the git command line (another writer).
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { REPO_ROOT } from "./cluster.ts";

export type GitRequest = {
  method: string;
  /** /<repo>.git/info/refs, /<repo>.git/git-upload-pack, /<repo>.git/git-receive-pack */
  path: string;
  /** git-upload-pack (fetch) or git-receive-pack (push) */
  service: string;
  status: number;
  user: string | undefined;
  at: number;
};

export type GitServerOptions = { username?: string; password?: string };

let backendPath: string | undefined;
/** git-http-backend's path (dev/git-http-backend.sh installs git once when it is missing). */
export function gitHttpBackend(): string {
  if (process.env.GIT_HTTP_BACKEND) return process.env.GIT_HTTP_BACKEND;
  if (!backendPath) {
    const res = spawnSync("bash", [path.join(REPO_ROOT, "dev/git-http-backend.sh")], { encoding: "utf8" });
    if (res.status !== 0) throw new Error(`dev/git-http-backend.sh failed: ${res.stderr}`);
    backendPath = res.stdout.trim();
  }
  return backendPath;
}

/** The git command line, without the user's configuration, as a fixed identity. */
export function gitCli(args: string[], cwd?: string, input?: string): string {
  const res = spawnSync("git", args, {
    cwd,
    input,
    encoding: "utf8",
    timeout: 60_000,
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: os.tmpdir(),
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_AUTHOR_NAME: "Another Writer",
      GIT_AUTHOR_EMAIL: "writer@example.com",
      GIT_COMMITTER_NAME: "Another Writer",
      GIT_COMMITTER_EMAIL: "writer@example.com",
    },
  });
  if (res.status !== 0) throw new Error(`git ${args.join(" ")} failed (${res.status}): ${res.stderr}`);
  return res.stdout;
}

/** A self-signed certificate for 127.0.0.1 and localhost (openssl, as dev/cluster.sh makes its own). */
function selfSignedCertificate(dir: string): { key: string; cert: string } {
  const key = path.join(dir, "tls.key");
  const cert = path.join(dir, "tls.crt");
  const res = spawnSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      key,
      "-out",
      cert,
      "-days",
      "2",
      "-subj",
      "/CN=ticclip-git-test",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ],
    { encoding: "utf8" },
  );
  if (res.status !== 0) throw new Error(`openssl failed: ${res.stderr}`);
  return { key: readFileSync(key, "utf8"), cert: readFileSync(cert, "utf8") };
}

export class GitServer {
  readonly root: string;
  readonly username: string;
  readonly password: string;
  /** The server's certificate (PEM): clients trust it as their CA. */
  readonly ca: string;
  readonly requests: GitRequest[] = [];
  #server: https.Server;
  #port = 0;
  #beforeReceivePack: (() => unknown) | undefined;

  private constructor(root: string, tls: { key: string; cert: string }, o: GitServerOptions) {
    this.root = root;
    this.username = o.username ?? "operator";
    this.password = o.password ?? "s3cr3t-git-password";
    this.ca = tls.cert;
    this.#server = https.createServer({ key: tls.key, cert: tls.cert }, (req, res) => void this.#handle(req, res));
  }

  static async start(o: GitServerOptions = {}): Promise<GitServer> {
    const dir = mkdtempSync(path.join(os.tmpdir(), "ticclip-git-"));
    const root = path.join(dir, "repos");
    mkdirSync(root);
    const server = new GitServer(root, selfSignedCertificate(dir), o);
    await new Promise<void>((resolve) => server.#server.listen(0, "127.0.0.1", resolve));
    server.#port = (server.#server.address() as AddressInfo).port;
    return server;
  }

  /** https://127.0.0.1:<port>/<name>.git */
  url(name: string): string {
    return `https://127.0.0.1:${this.#port}/${name}.git`;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    rmSync(path.dirname(this.root), { recursive: true, force: true });
  }

  /**
   * Runs `fn` once, just before the next push is handed to git (another writer pushes first). When
   * it returns "drop", the push is never applied and its connection is cut (the pusher crashed).
   */
  beforeNextPush(fn: () => unknown): void {
    this.#beforeReceivePack = fn;
  }

  /** A bare repository with one commit of `files` on `branch`. */
  createRepo(name: string, files: Record<string, string>, branch = "main"): void {
    const bare = path.join(this.root, `${name}.git`);
    gitCli(["init", "--quiet", "--bare", "--initial-branch", branch, bare]);
    this.commit(name, branch, files, "initial commit", { create: true });
  }

  /** Another writer: commits `files` (null deletes) on `branch` and pushes it straight to the bare repository. */
  commit(
    name: string,
    branch: string,
    files: Record<string, string | null>,
    message: string,
    o: { create?: boolean } = {},
  ): string {
    const work = mkdtempSync(path.join(os.tmpdir(), "ticclip-git-work-"));
    try {
      const bare = path.join(this.root, `${name}.git`);
      if (o.create) gitCli(["init", "--quiet", "--initial-branch", branch, work]);
      else gitCli(["clone", "--quiet", "--branch", branch, bare, work]);
      for (const [file, body] of Object.entries(files)) {
        const p = path.join(work, file);
        if (body === null) rmSync(p, { force: true });
        else {
          mkdirSync(path.dirname(p), { recursive: true });
          writeFileSync(p, body);
        }
      }
      gitCli(["add", "--all"], work);
      gitCli(["commit", "--quiet", "--allow-empty", "-m", message], work);
      gitCli(["push", "--quiet", bare, `HEAD:refs/heads/${branch}`], work);
      return gitCli(["rev-parse", "HEAD"], work).trim();
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }

  /** The commits of `branch`, newest first (subject, full message, author, commit time). */
  log(name: string, branch = "main"): { oid: string; message: string; author: string; email: string; time: number }[] {
    const bare = path.join(this.root, `${name}.git`);
    const out = gitCli(["--git-dir", bare, "log", "--format=%H%x00%an%x00%ae%x00%ct%x00%B%x1e", branch]);
    return out
      .split("\x1e")
      .map((s) => s.replace(/^\n/, ""))
      .filter((s) => s.length)
      .map((s) => {
        const [oid, author, email, time, message] = s.split("\x00");
        return { oid: oid!, author: author!, email: email!, time: Number(time), message: message!.trimEnd() };
      });
  }

  /** The file at `branch`, or undefined when it is not there. */
  show(name: string, branch: string, file: string): string | undefined {
    try {
      return gitCli(["--git-dir", path.join(this.root, `${name}.git`), "show", `${branch}:${file}`]);
    } catch {
      return undefined;
    }
  }

  branches(name: string): string[] {
    const out = gitCli(["--git-dir", path.join(this.root, `${name}.git`), "for-each-ref", "--format=%(refname:short)"]);
    return out.split("\n").filter(Boolean).sort();
  }

  /** Requests answered so far for one repository, by service. */
  count(name: string): { fetch: number; push: number; total: number; denied: number } {
    const mine = this.requests.filter((r) => r.path.startsWith(`/${name}.git/`));
    return {
      fetch: mine.filter((r) => r.service === "git-upload-pack").length,
      push: mine.filter((r) => r.service === "git-receive-pack").length,
      total: mine.length,
      denied: mine.filter((r) => r.status === 401).length,
    };
  }

  async #handle(req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "https://127.0.0.1");
    const service = url.searchParams.get("service") ?? url.pathname.split("/").pop() ?? "";
    const record = (status: number, user?: string) =>
      this.requests.push({ method: req.method ?? "", path: url.pathname, service, status, user, at: Date.now() });
    // Basic auth, as a Git host asks for it: every request, fetch and push alike.
    const header = req.headers.authorization ?? "";
    const m = /^Basic (.+)$/.exec(header);
    const [user, pass] = m ? Buffer.from(m[1]!, "base64").toString("utf8").split(/:(.*)/s) : [];
    if (user !== this.username || pass !== this.password) {
      record(401);
      req.resume();
      res.writeHead(401, { "WWW-Authenticate": 'Basic realm="ticclip-git"', "Content-Type": "text/plain" });
      res.end("authentication required\n");
      return;
    }
    if (req.method === "POST" && service === "git-receive-pack" && this.#beforeReceivePack) {
      const fn = this.#beforeReceivePack;
      this.#beforeReceivePack = undefined;
      if ((await fn()) === "drop") {
        record(0, user);
        req.socket.destroy();
        return;
      }
    }
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_PROJECT_ROOT: this.root,
      GIT_HTTP_EXPORT_ALL: "1",
      REQUEST_METHOD: req.method ?? "GET",
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: req.headers["content-type"] ?? "",
      REMOTE_USER: user,
      REMOTE_ADDR: req.socket.remoteAddress ?? "127.0.0.1",
      ...(req.headers["content-encoding"] ? { HTTP_CONTENT_ENCODING: req.headers["content-encoding"] } : {}),
      ...(req.headers["git-protocol"] ? { GIT_PROTOCOL: String(req.headers["git-protocol"]) } : {}),
      ...(req.headers["content-length"] ? { CONTENT_LENGTH: req.headers["content-length"] } : {}),
    };
    const cgi = spawn(gitHttpBackend(), [], { env, stdio: ["pipe", "pipe", "pipe"] });
    req.pipe(cgi.stdin);
    cgi.stdin.on("error", () => undefined);
    let stderr = "";
    cgi.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    // CGI output: header lines, a blank line, then the body.
    let head = Buffer.alloc(0);
    let headersSent = false;
    let status = 200;
    cgi.stdout.on("data", (chunk: Buffer) => {
      if (headersSent) {
        res.write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      const endLf = head.indexOf("\n\n");
      const cut = end >= 0 ? { at: end, len: 4 } : endLf >= 0 ? { at: endLf, len: 2 } : undefined;
      if (!cut) return;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, cut.at).toString("latin1").split(/\r?\n/)) {
        const i = line.indexOf(":");
        if (i < 0) continue;
        const k = line.slice(0, i).trim();
        const v = line.slice(i + 1).trim();
        if (k.toLowerCase() === "status") status = Number.parseInt(v, 10);
        else headers[k] = v;
      }
      res.writeHead(status, headers);
      headersSent = true;
      res.write(head.subarray(cut.at + cut.len));
    });
    cgi.on("close", (code) => {
      if (!headersSent) {
        status = 500;
        res.writeHead(500, { "Content-Type": "text/plain" });
        res.write(`git http-backend exited ${code}: ${stderr}`);
      }
      record(status, user);
      res.end();
    });
  }
}
