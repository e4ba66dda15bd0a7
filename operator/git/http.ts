// isomorphic-git's HTTP client, on node:https with the operator's bounds: connecting takes at most
// 10 s, a socket silent for 30 s fails the request, and the caller's signal (the sync's deadline)
// aborts it. A CA from the credentials Secret (ca.crt) is trusted besides the system's.
import http from "node:http";
import https from "node:https";
import tls from "node:tls";
import type { GitHttpRequest, GitHttpResponse, HttpClient } from "isomorphic-git";

export type HttpOptions = {
  /** PEM bundle trusted in addition to Node's roots. */
  ca?: string | undefined;
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  signal?: AbortSignal | undefined;
  /** Called once per HTTP request (figures: Git requests per promotion). */
  onRequest?: (method: string, url: string) => void;
};

async function collect(body: GitHttpRequest["body"]): Promise<Buffer | undefined> {
  if (!body) return undefined;
  const chunks: Uint8Array[] = [];
  for await (const c of body as AsyncIterable<Uint8Array>) chunks.push(c);
  return Buffer.concat(chunks);
}

export function httpClient(o: HttpOptions = {}): HttpClient {
  const connectTimeoutMs = o.connectTimeoutMs ?? 10_000;
  const idleTimeoutMs = o.idleTimeoutMs ?? 30_000;
  return {
    async request(req: GitHttpRequest): Promise<GitHttpResponse> {
      o.signal?.throwIfAborted();
      const body = await collect(req.body);
      const url = new URL(req.url);
      const headers: Record<string, string> = { ...req.headers };
      if (body) headers["content-length"] = String(body.byteLength);
      o.onRequest?.(req.method ?? "GET", url.pathname);
      const client = url.protocol === "https:" ? https : http;
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        const r = client.request(
          url,
          {
            method: req.method ?? "GET",
            headers,
            ...(o.ca && url.protocol === "https:" ? { ca: [...tls.getCACertificates("default"), o.ca] } : {}),
            signal: o.signal,
            agent: false,
          },
          resolve,
        );
        const connect = setTimeout(
          () => r.destroy(new Error(`connecting to ${url.host} took more than ${connectTimeoutMs} ms`)),
          connectTimeoutMs,
        );
        r.on("socket", (s) => {
          s.once(url.protocol === "https:" ? "secureConnect" : "connect", () => clearTimeout(connect));
          s.setTimeout(idleTimeoutMs, () => r.destroy(new Error(`${url.host} sent nothing for ${idleTimeoutMs} ms`)));
        });
        r.on("error", (e) => {
          clearTimeout(connect);
          reject(e);
        });
        r.end(body);
      });
      const responseHeaders: Record<string, string> = {};
      for (const [k, v] of Object.entries(res.headers)) {
        if (v !== undefined) responseHeaders[k] = Array.isArray(v) ? v.join(", ") : v;
      }
      return {
        url: req.url,
        method: req.method,
        statusCode: res.statusCode ?? 0,
        statusMessage: res.statusMessage ?? "",
        headers: responseHeaders,
        body: res[Symbol.asyncIterator]() as AsyncIterableIterator<Uint8Array>,
      };
    },
  };
}
