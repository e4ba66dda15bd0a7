// Slice discovery against the real local S3 server (MinIO): ordering, _SUCCESS, notifications,
// bad slices, S3 failures and the steady-state request bound.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { PutBucketNotificationConfigurationCommand, type S3Client } from "@aws-sdk/client-s3";
import { SliceDiscovery } from "../../../operator/data/discovery.ts";
import { createNotificationServer } from "../../../operator/data/notifications.ts";
import { createS3Client } from "../../../operator/s3/client.ts";
import { S3SliceStore } from "../../../operator/s3/slice-store.ts";
import { createBucket, putObject, requestCounter, s3Client, s3Connection } from "../../support/s3.ts";
import { manifestFor, putManySlices, putSlice } from "./slices.ts";

const P = "slices/";
const ids = (xs: { id: string }[]) => xs.map((x) => x.id);

function discoveryFor(client: S3Client, bucket: string, extra: { pageSize?: number; pollIntervalMs?: number } = {}) {
  return new SliceDiscovery({
    store: new S3SliceStore(client, bucket, extra.pageSize ? { pageSize: extra.pageSize } : {}),
    prefix: P,
    pollIntervalMs: extra.pollIntervalMs ?? 300_000,
  });
}

let client: S3Client;
before(async () => {
  client = s3Client();
});

describe("SliceDiscovery against S3", () => {
  test("finds slices as they appear, in order, and never one without _SUCCESS", async () => {
    const bucket = await createBucket(client, "disc");
    const d = discoveryFor(client, bucket);
    assert.deepEqual(ids((await d.poll()).slices), []);
    await putSlice(client, bucket, P, { id: "2015" });
    assert.deepEqual((await d.poll()).newSlices, ["2015"]);
    await putSlice(client, bucket, P, { id: "2016", complete: false });
    let r = await d.poll();
    assert.deepEqual(r.newSlices, []);
    assert.deepEqual(r.pending, ["2016"]);
    await putSlice(client, bucket, P, { id: "2017" });
    r = await d.poll();
    assert.deepEqual(r.newSlices, ["2017"]);
    assert.deepEqual(ids(r.slices), ["2015", "2017"]);
    await putObject(client, bucket, `${P}2016/_SUCCESS`);
    r = await d.poll();
    assert.deepEqual(r.newSlices, ["2016"]);
    assert.deepEqual(ids(r.slices), ["2015", "2016", "2017"]);
    assert.equal(r.slices[0]!.shards[0]!.uri, `s3://${bucket}/${P}2015/shard-00000.tar`);
  });

  test("marks each kind of bad slice invalid with its reason and still finds later slices", async () => {
    const bucket = await createBucket(client, "bad");
    const m = manifestFor("x", [10, 20]);
    await putSlice(client, bucket, P, { id: "2010" });
    await putSlice(client, bucket, P, { id: "2011", manifest: "not json {" });
    await putSlice(client, bucket, P, { id: "2012", manifest: { ...manifestFor("2012", [10]), numSamples: 11 } });
    await putSlice(client, bucket, P, {
      id: "2013",
      manifest: { ...manifestFor("2013", [10]), shards: [{ key: "/abs.tar", samples: 10, bytes: 1 }] },
    });
    await putSlice(client, bucket, P, {
      id: "2014",
      manifest: {
        ...m,
        sliceId: "2014",
        shards: [...m.shards, { key: "shard-00009.tar", samples: 5, bytes: 1 }],
        numSamples: 35,
      },
    });
    await putSlice(client, bucket, P, { id: "2015", shards: [7], manifest: { ...manifestFor("2010", [7]) } });
    await putObject(client, bucket, `${P}2016/shard-00000.tar`, "x");
    await putObject(client, bucket, `${P}2016/_SUCCESS`);
    await putSlice(client, bucket, P, { id: "2017" });
    const r = await discoveryFor(client, bucket).poll();
    assert.deepEqual(ids(r.slices), ["2010", "2017"]);
    assert.deepEqual(
      r.invalid.map((i) => [i.id, i.reason]),
      [
        ["2011", "ManifestNotJson"],
        ["2012", "SampleCountMismatch"],
        ["2013", "ManifestInvalid"],
        ["2014", "ShardMissing"],
        ["2015", "DuplicateSliceId"],
        ["2016", "ManifestMissing"],
      ],
    );
    assert.match(r.invalid[3]!.message, /shard-00009\.tar/);
  });

  test("a manifest rewritten after consumption raises ManifestChanged", async () => {
    const bucket = await createBucket(client, "chg");
    await putSlice(client, bucket, P, { id: "2020" });
    const d = discoveryFor(client, bucket);
    await d.poll();
    d.markConsumed(["2020"]);
    await putObject(
      client,
      bucket,
      `${P}2020/manifest.json`,
      JSON.stringify({
        ...manifestFor("2020", [10, 20]),
        createdAt: "2024-02-01T00:00:00Z",
        shards: manifestFor("2020", [10, 20]).shards.slice(0, 1),
        numSamples: 10,
      }),
    );
    d.recheck();
    const r = await d.poll();
    assert.deepEqual(
      r.warnings.map((w) => [w.id, w.reason]),
      [["2020", "ManifestChanged"]],
    );
    assert.equal(r.slices[0]!.numSamples, 30, "the consumed version stays");
  });

  test("2,500 slices: pagination past 1,000 and a steady-state poll within 2 list requests", async () => {
    const bucket = await createBucket(client, "many");
    const all = Array.from({ length: 2500 }, (_, i) => `s${String(i).padStart(5, "0")}`);
    await putManySlices(client, bucket, P, all);
    const count = requestCounter();
    const d = discoveryFor(s3Client({ count }), bucket);
    const cold = await d.poll();
    assert.equal(cold.slices.length, 2500);
    assert.deepEqual(ids(cold.slices), all);
    assert.deepEqual(cold.errors, []);
    count.reset();
    const warm = await d.poll();
    assert.equal(warm.slices.length, 2500);
    const lists = count.byCommand.get("ListObjectsV2Command") ?? 0;
    assert.ok(lists >= 1 && lists <= 2, `list requests per steady-state poll: ${lists}`);
    assert.equal(count.total, lists, `other requests: ${JSON.stringify([...count.byCommand])}`);
    await putSlice(client, bucket, P, { id: "s99999" });
    count.reset();
    assert.deepEqual((await d.poll()).newSlices, ["s99999"]);
    assert.ok(count.total <= 3, `a new slice costs ${count.total} requests`);
  });

  test("S3 failures degrade, back off and lose no slice; bad credentials and a dead endpoint are classified", async () => {
    const bucket = await createBucket(client, "err");
    for (const id of ["2001", "2002", "2003"]) await putSlice(client, bucket, P, { id });
    // Every request fails with a 503 SlowDown while `failing` is set, as a throttling S3 would.
    let failing = true;
    const flaky = createS3Client({ ...s3Connection() });
    flaky.middlewareStack.add(
      (next) => async (args) => {
        if (failing)
          throw Object.assign(new Error("Please reduce your request rate."), {
            name: "SlowDown",
            $metadata: { httpStatusCode: 503 },
          });
        return next(args);
      },
      { step: "finalizeRequest", priority: "low", name: "failWhileSet" },
    );
    const d = discoveryFor(flaky, bucket, { pollIntervalMs: 60_000 });
    const r1 = await d.poll();
    assert.equal(r1.health.ok, false);
    assert.equal(r1.errors[0]!.errorClass, "Throttled");
    assert.ok(r1.nextPollMs < 60_000);
    const r2 = await d.poll();
    assert.ok(!r2.health.ok && r2.health.consecutiveFailures === 2);
    failing = false;
    const r3 = await d.poll();
    assert.deepEqual(r3.health, { ok: true });
    assert.deepEqual(ids(r3.slices), ["2001", "2002", "2003"]);

    const wrongKeys = createS3Client({
      ...s3Connection(),
      credentials: { accessKeyId: "nobody", secretAccessKey: "wrong-secret-key" },
    });
    const bad = await discoveryFor(wrongKeys, bucket).poll();
    assert.equal(bad.errors[0]!.errorClass, "InvalidCredentials");
    assert.match(bad.errors[0]!.message, /InvalidAccessKeyId/);

    const dead = createS3Client({ ...s3Connection(), endpoint: "http://127.0.0.1:1" });
    const down = await discoveryFor(dead, bucket).poll();
    assert.equal(down.errors[0]!.errorClass, "Network");
  });
});

describe("notifications", () => {
  const TOKEN = process.env.S3_WEBHOOK_TOKEN ?? "integration-token";
  let server: ReturnType<typeof createNotificationServer>;
  let port = 0;
  const handlers: ((bucket: string, key: string) => void)[] = [];

  before(async () => {
    server = createNotificationServer({
      token: TOKEN,
      onSliceReady: (b, k) => {
        for (const h of handlers) h(b, k);
      },
    });
    const wanted = Number(process.env.S3_WEBHOOK_PORT ?? 0);
    await new Promise<void>((r) => server.listen(wanted, "127.0.0.1", r));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await new Promise((r) => server.close(r));
  });

  test("a _SUCCESS notification finds the new slice well under a poll interval", async () => {
    const bucket = await createBucket(client, "ntf");
    const d = discoveryFor(client, bucket, { pollIntervalMs: 300_000 });
    await d.poll();
    const arn = process.env.S3_WEBHOOK_ARN;
    if (arn) {
      // MinIO delivers to our server through its webhook target (configured by dev/cluster.sh).
      await client.send(
        new PutBucketNotificationConfigurationCommand({
          Bucket: bucket,
          NotificationConfiguration: {
            QueueConfigurations: [
              {
                QueueArn: arn,
                Events: ["s3:ObjectCreated:*"],
                Filter: { Key: { FilterRules: [{ Name: "prefix", Value: P }] } },
              },
            ],
          },
        }),
      );
    }
    const found = new Promise<number>((resolve) => {
      handlers.push(async (b, key) => {
        if (!d.matches(b, key) || !d.notify(key)) return;
        const r = await d.poll();
        if (r.newSlices.includes("2030")) resolve(performance.now());
      });
    });
    const t0 = performance.now();
    await putSlice(client, bucket, P, { id: "2030" });
    if (!arn) {
      // No webhook target configured on this server: deliver MinIO's event body ourselves.
      const body = {
        EventName: "s3:ObjectCreated:Put",
        Key: `${bucket}/${P}2030/_SUCCESS`,
        Records: [
          { eventName: "s3:ObjectCreated:Put", s3: { bucket: { name: bucket }, object: { key: `${P}2030/_SUCCESS` } } },
        ],
      };
      const res = await fetch(`http://127.0.0.1:${port}/s3-events`, {
        method: "POST",
        body: JSON.stringify(body),
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(res.status, 200);
    }
    const t1 = await Promise.race([
      found,
      new Promise<number>((_, reject) =>
        setTimeout(() => reject(new Error("no discovery within 10 s of the notification")), 10_000),
      ),
    ]);
    handlers.length = 0;
    assert.ok(t1 - t0 < 10_000);
  });
});
