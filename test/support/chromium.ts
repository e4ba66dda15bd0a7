// Headless Chromium (Debian's `chromium` package, installed by dev/chromium.sh) driven over the
// Chrome DevTools Protocol with Node's built-in WebSocket: open a page, collect console errors and
// uncaught exceptions, evaluate expressions in it. No browser download, no extra dependency.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

export function chromiumPath(): string {
  const candidates = [process.env.CHROMIUM, "chromium", "chromium-browser"].filter((c): c is string => !!c);
  for (const c of candidates) {
    if (spawnSync("sh", ["-c", `command -v "${c}"`]).status === 0) return c;
  }
  throw new Error("no chromium found: run `bash dev/chromium.sh` (Debian package chromium) or set CHROMIUM");
}

type Pending = { resolve: (v: any) => void; reject: (e: Error) => void };

export type PageProblems = { consoleErrors: string[]; exceptions: string[] };

export type Page = {
  problems: PageProblems;
  evaluate<T>(expression: string): Promise<T>;
  close(): Promise<void>;
};

/** Opens `url` in a fresh headless Chromium and resolves once its load event fired. */
export async function openPage(url: string, timeoutMs = 30_000): Promise<Page> {
  const profile = mkdtempSync(path.join(tmpdir(), "chromium-"));
  const child = spawn(
    chromiumPath(),
    [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-extensions",
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      "about:blank",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const cleanup = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
    rmSync(profile, { recursive: true, force: true });
  };
  try {
    const wsUrl = await new Promise<string>((resolve, reject) => {
      let err = "";
      const timer = setTimeout(() => reject(new Error(`chromium did not start: ${err}`)), timeoutMs);
      child.stderr!.on("data", (d: Buffer) => {
        err += d.toString();
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once("exit", (code) => reject(new Error(`chromium exited with ${code}: ${err}`)));
    });
    const ws = new WebSocket(wsUrl);
    await new Promise<void>((resolve, reject) => {
      ws.onopen = () => resolve();
      ws.onerror = () => reject(new Error(`cannot connect to ${wsUrl}`));
    });
    let nextId = 1;
    const pending = new Map<number, Pending>();
    const listeners: ((method: string, params: any) => void)[] = [];
    ws.onmessage = (ev) => {
      const msg = JSON.parse(String(ev.data));
      if (msg.id !== undefined) {
        const p = pending.get(msg.id);
        pending.delete(msg.id);
        if (msg.error) p?.reject(new Error(`${msg.error.message} (${msg.error.code})`));
        else p?.resolve(msg.result);
      } else {
        for (const l of listeners) l(msg.method, msg.params);
      }
    };
    const send = (method: string, params: object = {}, sessionId?: string): Promise<any> => {
      const id = nextId++;
      ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
      return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
    };

    const problems: PageProblems = { consoleErrors: [], exceptions: [] };
    let loaded!: () => void;
    const loadFired = new Promise<void>((resolve) => (loaded = resolve));
    listeners.push((method, params) => {
      if (method === "Runtime.consoleAPICalled" && (params.type === "error" || params.type === "assert")) {
        problems.consoleErrors.push(params.args.map((a: any) => a.value ?? a.description ?? "").join(" "));
      } else if (method === "Log.entryAdded" && params.entry.level === "error") {
        problems.consoleErrors.push(`${params.entry.source}: ${params.entry.text}`);
      } else if (method === "Runtime.exceptionThrown") {
        problems.exceptions.push(params.exceptionDetails.exception?.description ?? params.exceptionDetails.text);
      } else if (method === "Page.loadEventFired") {
        loaded();
      }
    });
    const { targetId } = await send("Target.createTarget", { url: "about:blank" });
    const { sessionId } = await send("Target.attachToTarget", { targetId, flatten: true });
    for (const domain of ["Runtime", "Log", "Page"]) await send(`${domain}.enable`, {}, sessionId);
    await send("Page.navigate", { url }, sessionId);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      loadFired,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${url} did not load in ${timeoutMs} ms`)), timeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    return {
      problems,
      async evaluate<T>(expression: string): Promise<T> {
        const r = await send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true }, sessionId);
        if (r.exceptionDetails)
          throw new Error(`evaluate failed: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
        return r.result.value as T;
      },
      async close() {
        ws.close();
        await cleanup();
      },
    };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
