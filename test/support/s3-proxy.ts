// A fault-injecting S3 proxy on loopback for integration tests: it forwards every request to the
// local MinIO unchanged (Host header included, so SigV4 signatures still verify) unless a rule
// matches, in which case it answers as a failing S3 would: 403 AccessDenied, 500, 503 SlowDown, or a
// connection reset. Rules match a method and a path (/bucket/key) and last for a number of matches
// or until removed, so a test can make one key fail for a while and then heal.
import http from "node:http";
import type net from "node:net";

export type Fault = "AccessDenied" | "InternalError" | "SlowDown" | "Reset";

export type FaultRule = {
  /** Regular expression over "<METHOD> /<bucket>/<key>", e.g. /^PUT \/models-[^/]+\/clip\/production\.json$/. */
  match: RegExp;
  fault: Fault;
  /** How many matching requests fail; unset: until removed. */
  times?: number;
};

export type FaultProxy = {
  endpoint: string;
  /** Adds a rule; returns a function that removes it. */
  add(rule: FaultRule): () => void;
  clear(): void;
  /** Requests failed so far, by fault. */
  injected: Map<Fault, number>;
  close(): Promise<void>;
};

const XML = (code: string, message: string) =>
  `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
const ANSWERS: Record<Exclude<Fault, "Reset">, [number, string, string]> = {
  AccessDenied: [403, "AccessDenied", "Access Denied"],
  InternalError: [500, "InternalError", "We encountered an internal error. Please try again."],
  SlowDown: [503, "SlowDown", "Please reduce your request rate."],
};

export async function faultProxy(upstreamEndpoint = process.env.S3_ENDPOINT!): Promise<FaultProxy> {
  const upstream = new URL(upstreamEndpoint);
  const rules: (FaultRule & { left: number })[] = [];
  const injected = new Map<Fault, number>();
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const line = `${req.method} ${decodeURIComponent(path)}`;
    const rule = rules.find((r) => r.left > 0 && r.match.test(line));
    if (rule) {
      rule.left--;
      injected.set(rule.fault, (injected.get(rule.fault) ?? 0) + 1);
      if (rule.fault === "Reset") {
        req.socket.destroy();
        return;
      }
      const [status, code, message] = ANSWERS[rule.fault];
      req.resume();
      res.writeHead(status, { "content-type": "application/xml" });
      res.end(XML(code, message));
      return;
    }
    const fwd = http.request(
      { host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    fwd.on("error", () => res.destroy());
    req.pipe(fwd);
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as net.AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    add(rule) {
      const entry = { ...rule, left: rule.times ?? Number.POSITIVE_INFINITY };
      rules.push(entry);
      return () => {
        const i = rules.indexOf(entry);
        if (i >= 0) rules.splice(i, 1);
      };
    },
    clear() {
      rules.length = 0;
    },
    injected,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}
