// S3ObjectStore's document reads against a real HTTP server on loopback: a large body is refused by
// its declared length or as it arrives, and a body that trickles fails inside the call's deadline.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { computeRecord } from "../../../operator/api/round-documents.ts";
import { createS3Client } from "../../../operator/s3/client.ts";
import { readDocument } from "../../../operator/s3/documents.ts";
import { classifyS3Error, ObjectTooLarge } from "../../../operator/s3/errors.ts";
import { S3ObjectStore } from "../../../operator/s3/object-store.ts";

const MiB = 1024 * 1024;
/** Bytes each answer put on the wire, by key: what the operator made the endpoint send. */
const sent = new Map<string, number>();
let server: http.Server;
let store: S3ObjectStore;

// Per key: how the endpoint answers a GET.
const answers: Record<string, (res: http.ServerResponse, count: (n: number) => void) => void> = {
  "small.json": (res) => {
    res.writeHead(200, { "content-type": "application/json", "content-length": "17" });
    res.end('{"gpuSeconds": 1}');
  },
  // Says 64 MiB up front: refused before a byte of the body is read.
  "declared-large.json": (res, count) => {
    res.writeHead(200, { "content-length": String(64 * MiB) });
    const chunk = Buffer.alloc(64 * 1024, 32);
    const pump = () => {
      while (!res.destroyed && res.write(chunk)) count(chunk.length);
      if (!res.destroyed) res.once("drain", pump);
    };
    pump();
  },
  // No length (chunked): refused once more than the limit has arrived.
  "chunked-large.json": (res, count) => {
    res.writeHead(200, { "transfer-encoding": "chunked" });
    const chunk = Buffer.alloc(64 * 1024, 32);
    const pump = () => {
      while (!res.destroyed && res.write(chunk)) count(chunk.length);
      if (!res.destroyed) res.once("drain", pump);
    };
    pump();
  },
  // A small document, one byte every 50 ms: the socket never idles, the deadline still holds.
  "trickle.json": (res, count) => {
    res.writeHead(200, { "content-length": "100000" });
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      res.write(" ");
      count(1);
    }, 50);
    res.on("close", () => clearInterval(timer));
  },
};

before(async () => {
  server = http.createServer((req, res) => {
    const key = new URL(req.url ?? "/", "http://x").pathname.split("/").at(-1)!;
    const answer = answers[key];
    if (!answer) {
      res.writeHead(404, { "content-type": "application/xml" });
      res.end("<Error><Code>NoSuchKey</Code></Error>");
      return;
    }
    sent.set(key, 0);
    answer(res, (n) => sent.set(key, (sent.get(key) ?? 0) + n));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = createS3Client({
    region: "us-east-1",
    endpoint,
    addressingStyle: "Path",
    credentials: { accessKeyId: "k", secretAccessKey: "s" },
  });
  store = new S3ObjectStore(client, { timeoutMs: 1500 });
});
after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe("S3ObjectStore document reads", { timeout: 60_000 }, () => {
  test("a document within its limit is read and parsed", async () => {
    assert.deepEqual(await readDocument(store, "s3://b/small.json", 1024, computeRecord), {
      value: { gpuSeconds: 1 },
    });
    assert.equal(await store.get("s3://b/absent.json", { maxBytes: 1024 }), undefined);
  });

  test("a body declared larger than the limit is refused without reading it", async () => {
    await assert.rejects(store.get("s3://b/declared-large.json", { maxBytes: MiB }), (e) => {
      assert.ok(e instanceof ObjectTooLarge);
      assert.match(e.message, /s3:\/\/b\/declared-large\.json is 67108864 bytes, more than the 1048576 bytes allowed/);
      return true;
    });
    assert.ok((sent.get("declared-large.json") ?? 0) < 64 * MiB, "the endpoint could not send it all");
    const read = await readDocument(store, "s3://b/declared-large.json", MiB, computeRecord);
    assert.deepEqual(read, { invalid: "67108864 bytes: more than the 1048576 bytes a document of its kind may have" });
  });

  test("a body of unknown length is cut off once past the limit", async () => {
    await assert.rejects(store.get("s3://b/chunked-large.json", { maxBytes: MiB }), ObjectTooLarge);
    const read = await readDocument(store, "s3://b/chunked-large.json", MiB, computeRecord);
    assert.deepEqual(read, { invalid: "more than the 1048576 bytes a document of its kind may have" });
  });

  test("a body that trickles fails with a timeout naming the key, inside the call's deadline", async () => {
    await assert.rejects(store.get("s3://b/trickle.json", { maxBytes: MiB }), (e) => {
      const p = classifyS3Error(e);
      assert.equal(p.reason, "S3Timeout");
      assert.match(p.message, /^get s3:\/\/b\/trickle\.json: /);
      return true;
    });
    assert.ok((sent.get("trickle.json") ?? 0) < 100_000, "the read did not wait for the whole body");
  });
});
