import { test } from "node:test";
import assert from "node:assert/strict";
import type { S3Connection } from "../../../operator/api/s3-connection.ts";
import { POOLED_CONNECTIONS, s3ClientPool } from "../../../operator/s3/client.ts";

const conn = (over: Partial<S3Connection> = {}): S3Connection => ({
  region: "us-east-1",
  endpoint: "http://minio:9000",
  addressingStyle: "Path",
  credentials: { accessKeyId: "a", secretAccessKey: "b" },
  ...over,
});

test("runs with the same endpoint, region and keys share one S3 client", () => {
  const clientFor = s3ClientPool();
  assert.equal(clientFor(conn()), clientFor(conn()));
});

test("a different endpoint, region, addressing style or key gets its own client", () => {
  const clientFor = s3ClientPool();
  const base = clientFor(conn());
  for (const other of [
    conn({ endpoint: "http://other:9000" }),
    conn({ region: "eu-west-1" }),
    conn({ addressingStyle: "VirtualHost" }),
    conn({ credentials: { accessKeyId: "a", secretAccessKey: "rotated" } }),
    conn({ credentials: undefined }),
  ]) {
    assert.notEqual(clientFor(other), base);
  }
});

test("the pool forgets the oldest connection past its size instead of growing without bound", () => {
  let created = 0;
  const clientFor = s3ClientPool(() => ({ n: created++ }) as never);
  for (let i = 0; i <= POOLED_CONNECTIONS; i++) clientFor(conn({ region: `r${i}` }));
  clientFor(conn({ region: "r1" })); // still pooled
  assert.equal(created, POOLED_CONNECTIONS + 1);
  clientFor(conn({ region: "r0" })); // dropped, rebuilt
  assert.equal(created, POOLED_CONNECTIONS + 2);
});
