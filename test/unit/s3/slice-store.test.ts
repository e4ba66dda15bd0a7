import { describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { SliceDiscovery } from "../../../operator/data/discovery.ts";
import { createS3Client } from "../../../operator/s3/client.ts";
import { S3SliceStore } from "../../../operator/s3/slice-store.ts";

describe("S3SliceStore", () => {
  test("a server that never answers is a Timeout, not a stalled poll", async () => {
    const sockets: net.Socket[] = [];
    const server = net.createServer((s) => void sockets.push(s)); // accepts, never replies
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const client = createS3Client({
        region: "us-east-1",
        endpoint: `http://127.0.0.1:${port}`,
        addressingStyle: "Path",
        credentials: { accessKeyId: "a", secretAccessKey: "b" },
      });
      const d = new SliceDiscovery({
        store: new S3SliceStore(client, "data", { timeoutMs: 300 }),
        prefix: "slices/",
        pollIntervalMs: 60_000,
      });
      const t0 = performance.now();
      const r = await d.poll();
      assert.ok(performance.now() - t0 < 5_000);
      assert.equal(r.errors[0]?.errorClass, "Timeout", JSON.stringify(r.errors));
      assert.equal(r.health.ok, false);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    }
  });
});
