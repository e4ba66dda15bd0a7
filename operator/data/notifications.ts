// S3 event notifications: the HTTP endpoint MinIO's webhook target and SNS HTTP(S) subscriptions
// post to. It only tells discovery where to look sooner; polling remains the source of truth, so a
// lost notification costs latency, never a slice.
import { createHash, timingSafeEqual } from "node:crypto";
import http from "node:http";
import { z } from "zod";
import { SUCCESS_MARKER } from "../api/slice-manifest.ts";

export type S3ObjectEvent = { bucket: string; key: string; eventName: string };

export type NotificationOutcome = {
  status: 200 | 400 | 401 | 405 | 413;
  /** Short plain-text reason, safe to return to the caller. */
  message: string;
  /** Every object event in the request (keys URL-decoded). */
  events: S3ObjectEvent[];
  /** ObjectCreated events of _SUCCESS markers: the only ones that may start a round. */
  matched: { bucket: string; key: string }[];
  /** SNS subscription handshake: the URL to GET to confirm (only sns.<region>.amazonaws.com). */
  confirmSubscriptionUrl?: string;
};

const record = z.object({
  eventName: z.string(),
  s3: z.object({
    bucket: z.object({ name: z.string().min(1) }),
    object: z.object({ key: z.string().min(1) }),
  }),
});
const s3Event = z.object({ Records: z.array(record).max(10_000) });
const testEvent = z.object({ Event: z.literal("s3:TestEvent") });
const snsEnvelope = z.object({
  Type: z.enum(["SubscriptionConfirmation", "Notification", "UnsubscribeConfirmation"]),
  Message: z.string().optional(),
  SubscribeURL: z.string().optional(),
  TopicArn: z.string().optional(),
});

const SNS_HOST = /^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/;

function digest(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

/**
 * Accepts `Authorization: Bearer <token>` (MinIO's webhook auth_token), the bare token, or Basic
 * auth with the token as password (SNS subscriptions to https://user:<token>@host/...).
 */
export function isAuthorized(headers: http.IncomingHttpHeaders, token: string): boolean {
  if (!token) return false;
  const h = headers.authorization;
  if (typeof h !== "string" || !h) return false;
  let presented = h;
  const m = /^(Bearer|Basic)\s+(.+)$/i.exec(h.trim());
  if (m && m[1]!.toLowerCase() === "bearer") presented = m[2]!;
  if (m && m[1]!.toLowerCase() === "basic") {
    const decoded = Buffer.from(m[2]!, "base64").toString("utf-8");
    presented = decoded.slice(decoded.indexOf(":") + 1);
  }
  return timingSafeEqual(digest(presented.trim()), digest(token));
}

function decodeKey(k: string): string {
  // S3 event keys are URL-encoded the way HTML forms are: '+' for a space.
  return decodeURIComponent(k.replace(/\+/g, " "));
}

const isCreated = (e: S3ObjectEvent) => e.eventName.includes("ObjectCreated:");

function reply(
  status: NotificationOutcome["status"],
  message: string,
  events: S3ObjectEvent[] = [],
  extra: Partial<NotificationOutcome> = {},
): NotificationOutcome {
  const matched = events
    .filter((e) => isCreated(e) && (e.key === SUCCESS_MARKER || e.key.endsWith("/" + SUCCESS_MARKER)))
    .map((e) => ({ bucket: e.bucket, key: e.key }));
  return { status, message, events, matched, ...extra };
}

function parseS3Records(doc: unknown): NotificationOutcome {
  if (testEvent.safeParse(doc).success) return reply(200, "test event");
  const parsed = s3Event.safeParse(doc);
  if (!parsed.success) return reply(400, "not an S3 event notification");
  const events: S3ObjectEvent[] = [];
  for (const r of parsed.data.Records) {
    try {
      events.push({
        bucket: r.s3.bucket.name,
        key: decodeKey(r.s3.object.key),
        eventName: r.eventName.replace(/^s3:/, ""),
      });
    } catch {
      return reply(400, "malformed object key");
    }
  }
  return reply(200, `${events.length} events`, events);
}

/** Pure handler for one POSTed body: authenticates, parses, and says what the event means. */
export function handleS3Event(
  body: string | Buffer,
  headers: http.IncomingHttpHeaders,
  options: { token: string },
): NotificationOutcome {
  if (!isAuthorized(headers, options.token)) return reply(401, "unauthorized");
  let doc: unknown;
  try {
    doc = JSON.parse(typeof body === "string" ? body : body.toString("utf-8"));
  } catch {
    return reply(400, "body is not JSON");
  }
  const snsType = headers["x-amz-sns-message-type"];
  const sns = snsEnvelope.safeParse(doc);
  if (sns.success && (snsType === undefined || snsType === sns.data.Type)) {
    const m = sns.data;
    if (m.Type === "SubscriptionConfirmation") {
      let url: URL;
      try {
        url = new URL(m.SubscribeURL ?? "");
      } catch {
        return reply(400, "SubscriptionConfirmation without a valid SubscribeURL");
      }
      if (url.protocol !== "https:" || !SNS_HOST.test(url.hostname))
        return reply(400, "SubscribeURL is not an SNS endpoint");
      return reply(200, "subscription confirmation", [], { confirmSubscriptionUrl: url.toString() });
    }
    if (m.Type === "UnsubscribeConfirmation") return reply(200, "unsubscribed");
    let inner: unknown;
    try {
      inner = JSON.parse(m.Message ?? "");
    } catch {
      return reply(400, "SNS message is not JSON");
    }
    return parseS3Records(inner);
  }
  if (snsType !== undefined) return reply(400, "not an SNS message");
  return parseS3Records(doc);
}

export type NotificationServerOptions = {
  token: string;
  /** Path the events are posted to. */
  path?: string;
  /** A _SUCCESS marker was created: look for a new slice now (tools that watch markers only). */
  onSliceReady?: (bucket: string, key: string) => void;
  /**
   * Every ObjectCreated event (a _SUCCESS marker, a manifest.json rewrite: SliceDiscovery.notify
   * decides which keys matter). Removals and other events start nothing: polling sees them.
   */
  onObjectEvent?: (event: S3ObjectEvent) => void;
  /**
   * False on a standby replica: events are refused with 503 so the sender retries and the leader
   * gets them, instead of a 200 for events nobody acts on.
   */
  accepting?: () => boolean;
  /** Confirms an SNS subscription; defaults to an HTTPS GET of the URL. */
  confirmSubscription?: (url: string) => Promise<void>;
  maxBodyBytes?: number;
  /** Connections open at once; past it new ones are closed on arrival (senders retry). */
  maxConnections?: number;
  /** Time a client has to send its request headers. */
  headersTimeoutMs?: number;
  /** Time a client has to send its whole request, body included. */
  requestTimeoutMs?: number;
};

/**
 * Limits of the endpoint. A request is authenticated from its headers before a byte of its body is
 * read, so an unauthenticated client costs one connection and its headers, and the connections,
 * the time to send headers and the time to send a body are bounded: slow or many clients cannot
 * hold the operator's memory (MinIO and SNS post small bodies at once).
 */
export const NOTIFICATION_LIMITS = {
  maxBodyBytes: 1024 * 1024,
  maxConnections: 64,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  /** Request headers, all together (Node's default is 16 KiB). */
  maxHeaderBytes: 16 * 1024,
};

async function getUrl(url: string): Promise<void> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`SubscribeURL answered ${res.status}`);
  await res.arrayBuffer();
}

/** A node:http server for S3 event notifications; call listen() on it. */
export function createNotificationServer(o: NotificationServerOptions): http.Server {
  const path = o.path ?? "/s3-events";
  const max = o.maxBodyBytes ?? NOTIFICATION_LIMITS.maxBodyBytes;
  const confirm = o.confirmSubscription ?? getUrl;
  const send = (res: http.ServerResponse, status: number, message: string) => {
    res.writeHead(status, {
      "content-type": "text/plain; charset=utf-8",
      ...(status === 401 ? { "www-authenticate": 'Bearer realm="s3-events"' } : {}),
    });
    res.end(message + "\n");
  };
  // Answers without reading the body, then closes: the body is never buffered, and a client that
  // keeps sending cannot keep the connection.
  const refuse = (req: http.IncomingMessage, res: http.ServerResponse, status: number, message: string) => {
    res.setHeader("connection", "close");
    send(res, status, message);
    res.once("finish", () => req.destroy());
  };
  const requestTimeoutMs = o.requestTimeoutMs ?? NOTIFICATION_LIMITS.requestTimeoutMs;
  const headersTimeoutMs = Math.min(o.headersTimeoutMs ?? NOTIFICATION_LIMITS.headersTimeoutMs, requestTimeoutMs);
  const server = http.createServer(
    {
      headersTimeout: headersTimeoutMs,
      requestTimeout: requestTimeoutMs,
      maxHeaderSize: NOTIFICATION_LIMITS.maxHeaderBytes,
      // How often Node checks the two deadlines above (default 30 s, longer than they are).
      connectionsCheckingInterval: Math.max(100, Math.min(1000, headersTimeoutMs / 4)),
    },
    (req, res) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      if (url.pathname !== path) return refuse(req, res, 404, "not found");
      if (req.method !== "POST") return refuse(req, res, 405, "POST only");
      if (o.accepting && !o.accepting()) return refuse(req, res, 503, "not the leader: retry");
      if (!isAuthorized(req.headers, o.token)) return refuse(req, res, 401, "unauthorized");
      const declared = Number(req.headers["content-length"]);
      if (declared > max) return refuse(req, res, 413, "body too large");
      const chunks: Buffer[] = [];
      let size = 0;
      let tooLarge = false;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size <= max) chunks.push(c);
        else if (!tooLarge) {
          // Answer and close: reading on would let a client stream without end.
          tooLarge = true;
          chunks.length = 0;
          refuse(req, res, 413, "body too large");
        }
      });
      req.on("error", () => {
        if (!res.headersSent) send(res, 400, "request error");
      });
      req.on("end", async () => {
        if (tooLarge) return;
        const out = handleS3Event(Buffer.concat(chunks), req.headers, { token: o.token });
        if (out.status !== 200) return send(res, out.status, out.message);
        if (out.confirmSubscriptionUrl) {
          try {
            await confirm(out.confirmSubscriptionUrl);
          } catch (err) {
            return send(res, 502, `could not confirm the subscription: ${(err as Error).message}`);
          }
        }
        for (const e of out.events) if (isCreated(e)) o.onObjectEvent?.(e);
        for (const m of out.matched) o.onSliceReady?.(m.bucket, m.key);
        send(res, 200, out.message);
      });
    },
  );
  server.maxConnections = o.maxConnections ?? NOTIFICATION_LIMITS.maxConnections;
  // A kept-alive connection waiting for its next request holds a slot: release it soon.
  server.keepAliveTimeout = Math.min(5000, headersTimeoutMs);
  return server;
}
