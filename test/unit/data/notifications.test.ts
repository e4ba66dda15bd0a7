import { describe, test } from "node:test";
import assert from "node:assert/strict";
import net, { type AddressInfo } from "node:net";
import { createNotificationServer, handleS3Event } from "../../../operator/data/notifications.ts";

const TOKEN = "s3cr3t-token";
const auth = { authorization: `Bearer ${TOKEN}` };

/** The body MinIO's webhook target posts (shape of minio/internal/event). */
export function minioEvent(bucket: string, key: string, eventName = "s3:ObjectCreated:Put") {
  return {
    EventName: eventName,
    Key: `${bucket}/${key}`,
    Records: [
      {
        eventVersion: "2.0",
        eventSource: "minio:s3",
        awsRegion: "",
        eventTime: "2024-01-01T00:00:00.000Z",
        eventName,
        userIdentity: { principalId: "ticclip" },
        s3: {
          s3SchemaVersion: "1.0",
          configurationId: "Config",
          bucket: { name: bucket, ownerIdentity: { principalId: "ticclip" }, arn: `arn:aws:s3:::${bucket}` },
          object: {
            key: encodeURIComponent(key).replace(/%20/g, "+"),
            size: 0,
            eTag: "d41d8cd98f00b204e9800998ecf8427e",
            sequencer: "17A",
          },
        },
      },
    ],
  };
}

/** The AWS S3 event JSON (eventName without the s3: prefix). */
function awsEvent(bucket: string, keys: string[]) {
  return {
    Records: keys.map((k) => ({
      eventVersion: "2.1",
      eventSource: "aws:s3",
      eventName: "ObjectCreated:Put",
      s3: {
        bucket: { name: bucket },
        object: { key: encodeURIComponent(k).replace(/%2F/g, "/").replace(/%20/g, "+"), size: 1 },
      },
    })),
  };
}

describe("handleS3Event", () => {
  test("matches the _SUCCESS marker of a MinIO webhook event", () => {
    const out = handleS3Event(JSON.stringify(minioEvent("data", "slices/2016/_SUCCESS")), auth, { token: TOKEN });
    assert.equal(out.status, 200);
    assert.deepEqual(out.matched, [{ bucket: "data", key: "slices/2016/_SUCCESS" }]);
    assert.deepEqual(out.events, [{ bucket: "data", key: "slices/2016/_SUCCESS", eventName: "ObjectCreated:Put" }]);
  });

  test("decodes AWS form-encoded keys and matches only _SUCCESS among them", () => {
    const out = handleS3Event(
      JSON.stringify(
        awsEvent("data", ["my slices/2016/_SUCCESS", "my slices/2016/shard-00000.tar", "my slices/2016/manifest.json"]),
      ),
      auth,
      { token: TOKEN },
    );
    assert.equal(out.status, 200);
    assert.equal(out.events.length, 3);
    assert.deepEqual(out.matched, [{ bucket: "data", key: "my slices/2016/_SUCCESS" }]);
  });

  test("does not match deletions of _SUCCESS", () => {
    const out = handleS3Event(
      JSON.stringify(minioEvent("data", "slices/2016/_SUCCESS", "s3:ObjectRemoved:Delete")),
      auth,
      { token: TOKEN },
    );
    assert.equal(out.status, 200);
    assert.deepEqual(out.matched, []);
  });

  const rejected: { name: string; body: string; headers: Record<string, string>; status: number }[] = [
    {
      name: "no Authorization header",
      body: JSON.stringify(minioEvent("data", "a/_SUCCESS")),
      headers: {},
      status: 401,
    },
    {
      name: "a wrong bearer token",
      body: JSON.stringify(minioEvent("data", "a/_SUCCESS")),
      headers: { authorization: "Bearer nope" },
      status: 401,
    },
    { name: "a body that is not JSON", body: "{", headers: auth, status: 400 },
    { name: "JSON that is not an S3 event", body: JSON.stringify({ hello: 1 }), headers: auth, status: 400 },
    {
      name: "a record without a key",
      body: JSON.stringify({
        Records: [{ eventName: "ObjectCreated:Put", s3: { bucket: { name: "b" }, object: {} } }],
      }),
      headers: auth,
      status: 400,
    },
    {
      name: "a malformed URL-encoded key",
      body: JSON.stringify({
        Records: [
          { eventName: "ObjectCreated:Put", s3: { bucket: { name: "b" }, object: { key: "a/%E0%A4%A/_SUCCESS" } } },
        ],
      }),
      headers: auth,
      status: 400,
    },
    {
      name: "an SNS confirmation pointing outside SNS",
      body: JSON.stringify({ Type: "SubscriptionConfirmation", SubscribeURL: "https://evil.example.com/confirm" }),
      headers: { ...auth, "x-amz-sns-message-type": "SubscriptionConfirmation" },
      status: 400,
    },
  ];
  for (const c of rejected) {
    test(`answers ${c.status} and matches nothing for ${c.name}`, () => {
      const out = handleS3Event(c.body, c.headers, { token: TOKEN });
      assert.equal(out.status, c.status);
      assert.deepEqual(out.matched, []);
      assert.equal(out.confirmSubscriptionUrl, undefined);
    });
  }

  test("accepts the bare token and Basic auth with the token as password (SNS)", () => {
    const body = JSON.stringify(minioEvent("data", "a/_SUCCESS"));
    assert.equal(handleS3Event(body, { authorization: TOKEN }, { token: TOKEN }).status, 200);
    const basic = "Basic " + Buffer.from(`sns:${TOKEN}`).toString("base64");
    assert.equal(handleS3Event(body, { authorization: basic }, { token: TOKEN }).status, 200);
    assert.equal(handleS3Event(body, { authorization: "Bearer x" }, { token: "" }).status, 401);
  });

  test("unwraps SNS notifications and confirms SNS subscriptions", () => {
    const note = {
      Type: "Notification",
      TopicArn: "arn:aws:sns:us-east-1:1:t",
      Message: JSON.stringify(awsEvent("data", ["s/2016/_SUCCESS"])),
    };
    const out = handleS3Event(
      JSON.stringify(note),
      { ...auth, "x-amz-sns-message-type": "Notification" },
      { token: TOKEN },
    );
    assert.deepEqual(out.matched, [{ bucket: "data", key: "s/2016/_SUCCESS" }]);
    const url = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn&Token=abc";
    const conf = handleS3Event(
      JSON.stringify({ Type: "SubscriptionConfirmation", SubscribeURL: url, Message: "confirm" }),
      { ...auth, "x-amz-sns-message-type": "SubscriptionConfirmation" },
      { token: TOKEN },
    );
    assert.equal(conf.status, 200);
    assert.equal(conf.confirmSubscriptionUrl, url);
    const testEvent = handleS3Event(JSON.stringify({ Service: "Amazon S3", Event: "s3:TestEvent" }), auth, {
      token: TOKEN,
    });
    assert.equal(testEvent.status, 200);
  });
});

describe("createNotificationServer", () => {
  test("calls onSliceReady for _SUCCESS only, confirms SNS, and rejects bad requests over HTTP", async () => {
    const ready: string[] = [];
    const seen: string[] = [];
    const confirmed: string[] = [];
    const server = createNotificationServer({
      token: TOKEN,
      onSliceReady: (b, k) => ready.push(`${b}/${k}`),
      onObjectEvent: (e) => seen.push(e.key),
      confirmSubscription: async (u) => void confirmed.push(u),
      maxBodyBytes: 4096,
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const post = (body: string, headers: Record<string, string> = auth, path = "/s3-events") =>
      fetch(base + path, { method: "POST", body, headers });
    try {
      assert.equal((await post(JSON.stringify(minioEvent("data", "slices/2016/shard-00000.tar")))).status, 200);
      assert.equal((await post(JSON.stringify(minioEvent("data", "slices/2016/_SUCCESS")))).status, 200);
      assert.deepEqual(ready, ["data/slices/2016/_SUCCESS"]);
      assert.deepEqual(seen, ["slices/2016/shard-00000.tar", "slices/2016/_SUCCESS"]);
      assert.equal((await post(JSON.stringify(minioEvent("data", "slices/2017/_SUCCESS")), {})).status, 401);
      assert.equal((await post("nope")).status, 400);
      assert.equal((await post("x".repeat(5000))).status, 413);
      assert.equal((await fetch(base + "/s3-events")).status, 405);
      assert.equal((await post("{}", auth, "/other")).status, 404);
      const url = "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=t";
      assert.equal(
        (
          await post(JSON.stringify({ Type: "SubscriptionConfirmation", SubscribeURL: url }), {
            ...auth,
            "x-amz-sns-message-type": "SubscriptionConfirmation",
          })
        ).status,
        200,
      );
      assert.deepEqual(confirmed, [url]);
      assert.deepEqual(ready, ["data/slices/2016/_SUCCESS"], "rejected requests changed nothing");
    } finally {
      await new Promise((r) => server.close(r));
    }
  });

  test("a body past the limit is answered 413 and the connection closed; a standby answers 503", async () => {
    let leader = false;
    const seen: string[] = [];
    const server = createNotificationServer({
      token: TOKEN,
      onObjectEvent: (e) => seen.push(e.key),
      maxBodyBytes: 1024,
      accepting: () => leader,
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as AddressInfo).port;
    try {
      const body = JSON.stringify(minioEvent("data", "slices/2016/_SUCCESS"));
      const post = () => fetch(`http://127.0.0.1:${port}/s3-events`, { method: "POST", body, headers: auth });
      assert.equal((await post()).status, 503, "a standby makes the sender retry");
      leader = true;
      assert.equal((await post()).status, 200);
      assert.deepEqual(seen, ["slices/2016/_SUCCESS"]);
      // A client that keeps streaming gets its answer and a closed connection.
      const answer = await new Promise<{ status: string; closed: boolean }>((resolve) => {
        const sock = net.connect(port, "127.0.0.1", () => {
          sock.write(
            `POST /s3-events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 100000000\r\n\r\n`,
          );
          const chunk = "x".repeat(4096);
          const pump = () => {
            if (!sock.destroyed && sock.writable) sock.write(chunk, () => setImmediate(pump));
          };
          pump();
        });
        let text = "";
        sock.on("data", (d) => (text += d.toString()));
        sock.on("error", () => {});
        sock.on("close", () => resolve({ status: text.split("\r\n")[0] ?? "", closed: true }));
      });
      assert.match(answer.status, /413/);
      assert.equal(answer.closed, true);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test("only ObjectCreated events reach discovery: a removed _SUCCESS or manifest.json starts no look", async () => {
    const seen: string[] = [];
    const server = createNotificationServer({
      token: TOKEN,
      onObjectEvent: (e) => seen.push(`${e.eventName} ${e.key}`),
    });
    const port = await listen(server);
    try {
      const post = (body: unknown) =>
        fetch(`http://127.0.0.1:${port}/s3-events`, { method: "POST", body: JSON.stringify(body), headers: auth });
      for (const [key, event] of [
        ["slices/2016/_SUCCESS", "s3:ObjectRemoved:Delete"],
        ["slices/2016/manifest.json", "s3:ObjectRemoved:Delete"],
        ["slices/2016/manifest.json", "s3:ObjectCreated:Put"],
      ] as const)
        assert.equal((await post(minioEvent("data", key, event))).status, 200);
      assert.deepEqual(seen, ["ObjectCreated:Put slices/2016/manifest.json"]);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test("an unauthenticated request is answered 401 from its headers, before any of its body is read", {
    timeout: 30_000,
  }, async () => {
    const server = createNotificationServer({ token: TOKEN });
    const port = await listen(server);
    try {
      // Declares 100 MB and sends none of it: a server that buffered before authenticating would wait.
      const head = "POST /s3-events HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n";
      const out = await exchange(port, head);
      assert.match(out.statusLine, / 401 /);
      assert.equal(out.bodyBytesSent, 0);
      assert.equal(out.closed, true, "the connection is not kept for a body");
      const wrong = await exchange(port, head.replace("Host: x", "Host: x\r\nAuthorization: Bearer not-the-token"));
      assert.match(wrong.statusLine, / 401 /);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test("headers or a body sent too slowly end the connection with 408", { timeout: 30_000 }, async () => {
    const server = createNotificationServer({ token: TOKEN, headersTimeoutMs: 300, requestTimeoutMs: 600 });
    const port = await listen(server);
    try {
      // Headers one line at a time, never finished.
      const headers = await exchange(port, "POST /s3-events HTTP/1.1\r\nHost: x\r\n", { trickle: "X-Slow: 1\r\n" });
      assert.match(headers.statusLine, / 408 /);
      assert.equal(headers.closed, true);
      // An authenticated sender that trickles its body.
      const head = `POST /s3-events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Length: 1000\r\n\r\n`;
      const body = await exchange(port, head, { trickle: "x" });
      assert.match(body.statusLine, / 408 /);
      assert.equal(body.closed, true);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test("350 slow unauthenticated clients hold at most maxConnections connections, and each is refused", {
    timeout: 30_000,
  }, async () => {
    const maxConnections = 16;
    const server = createNotificationServer({ token: TOKEN, maxConnections });
    const port = await listen(server);
    let most = 0;
    server.on("connection", () =>
      server.getConnections((_e, n) => {
        most = Math.max(most, n);
      }),
    );
    try {
      // Each connects, sends headers that declare a large body without a token, then trickles it.
      const head = "POST /s3-events HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n";
      const outs = await Promise.all(Array.from({ length: 350 }, () => exchange(port, head, { trickle: "x" })));
      const answered = outs.filter((o) => / 401 /.test(o.statusLine)).length;
      const dropped = outs.filter((o) => o.statusLine === "").length;
      assert.equal(answered + dropped, 350, "every client was answered 401 or dropped");
      assert.ok(answered > 0);
      assert.ok(outs.every((o) => o.closed));
      assert.ok(most <= maxConnections, `${most} connections open at once`);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

async function listen(server: import("node:http").Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as AddressInfo).port;
}

/**
 * Sends `head` on a raw socket, then `trickle` every 20 ms until the server answers or closes; the
 * first line of the answer ("" when the server closed without one) and the trickled bytes sent.
 */
function exchange(
  port: number,
  head: string,
  o: { trickle?: string } = {},
): Promise<{ statusLine: string; closed: boolean; bodyBytesSent: number }> {
  return new Promise((resolve) => {
    let text = "";
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const sock = net.connect(port, "127.0.0.1", () => {
      sock.write(head);
      if (o.trickle)
        timer = setInterval(() => {
          if (sock.writable && text === "") {
            sock.write(o.trickle!);
            sent += o.trickle!.length;
          }
        }, 20);
    });
    sock.on("data", (d) => (text += d.toString()));
    sock.on("error", () => {});
    sock.on("close", () => {
      clearInterval(timer);
      resolve({ statusLine: text.split("\r\n")[0] ?? "", closed: true, bodyBytesSent: o.trickle ? sent : 0 });
    });
  });
}
