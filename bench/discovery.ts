// Benchmark of slice discovery and the replay planner against the local S3 server.
//   npm run bench:discovery            (needs the S3 variables of .local/cluster/s3.env)
// Prints: list requests per steady-state poll, time and memory to discover 5,000 slices,
// notification-to-discovery latency p50/p95, planner time for 1,000 slices / 100,000 shards.
import type { AddressInfo } from "node:net";
import { SliceDiscovery } from "../operator/data/discovery.ts";
import { createNotificationServer } from "../operator/data/notifications.ts";
import { planRound, type PlannerSlice } from "../operator/data/planner.ts";
import { S3SliceStore } from "../operator/s3/slice-store.ts";
import { PutBucketNotificationConfigurationCommand } from "@aws-sdk/client-s3";
import { createBucket, putObject, requestCounter, s3Client } from "../test/support/s3.ts";
import { putManySlices, putSlice } from "../test/integration/data/slices.ts";

const SLICES = Number(process.env.BENCH_SLICES ?? 5000);
const LATENCY_SAMPLES = Number(process.env.BENCH_LATENCY_SAMPLES ?? 50);
const P = "slices/";

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!;
}
const ms = (x: number) => `${x.toFixed(1)} ms`;
const mib = (x: number) => `${(x / 1024 / 1024).toFixed(1)} MiB`;

async function main() {
  const client = s3Client();
  const bucket = await createBucket(client, "bench");
  const ids = Array.from({ length: SLICES }, (_, i) => `s${String(i).padStart(6, "0")}`);
  let t = performance.now();
  await putManySlices(client, bucket, P, ids, 64);
  console.log(`setup: wrote ${SLICES} slices (3 objects each) in ${ms(performance.now() - t)}`);

  // Cold discovery of every slice.
  const count = requestCounter();
  const counted = s3Client({ count });
  global.gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  const d = new SliceDiscovery({ store: new S3SliceStore(counted, bucket), prefix: P, pollIntervalMs: 300_000 });
  t = performance.now();
  const cold = await d.poll();
  const coldMs = performance.now() - t;
  global.gc?.();
  const heap1 = process.memoryUsage().heapUsed;
  if (cold.slices.length !== SLICES || cold.errors.length)
    throw new Error(`cold discovery found ${cold.slices.length} slices, errors ${JSON.stringify(cold.errors)}`);
  console.log(
    `discover ${SLICES} slices (cold): ${ms(coldMs)}, ${count.total} requests, heap +${mib(heap1 - heap0)}${global.gc ? "" : " (run with --expose-gc for a settled figure)"}, rss ${mib(process.memoryUsage().rss)}`,
  );

  // Steady state: nothing changed.
  const perPoll: number[] = [];
  const pollMs: number[] = [];
  for (let i = 0; i < 10; i++) {
    count.reset();
    t = performance.now();
    await d.poll();
    pollMs.push(performance.now() - t);
    perPoll.push(count.byCommand.get("ListObjectsV2Command") ?? 0);
    if (count.total !== perPoll[i])
      throw new Error(`steady-state poll made non-list requests: ${JSON.stringify([...count.byCommand])}`);
  }
  console.log(
    `steady-state poll over ${SLICES} slices: ${Math.max(...perPoll)} list request(s) per poll (max of 10), p50 ${ms(quantile(pollMs, 0.5))}`,
  );

  // Notification to discovery: from the moment the _SUCCESS PUT returns to the moment discovery
  // reports the slice. With S3_WEBHOOK_ARN/S3_WEBHOOK_PORT (a MinIO webhook target pointing at
  // 127.0.0.1:<port>/s3-events with token S3_WEBHOOK_TOKEN) MinIO delivers the event; otherwise
  // the benchmark posts MinIO's event body itself and says so.
  const arn = process.env.S3_WEBHOOK_ARN;
  const TOKEN = process.env.S3_WEBHOOK_TOKEN ?? "integration-token";
  let waiting: ((id: string) => void) | undefined;
  const server = createNotificationServer({
    token: TOKEN,
    onSliceReady: async (b, key) => {
      if (!d.matches(b, key) || !d.notify(key)) return;
      const r = await d.poll();
      for (const id of r.newSlices) waiting?.(id);
    },
  });
  await new Promise<void>((r) => server.listen(arn ? Number(process.env.S3_WEBHOOK_PORT) : 0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/s3-events`;
  if (arn) {
    await client.send(
      new PutBucketNotificationConfigurationCommand({
        Bucket: bucket,
        NotificationConfiguration: {
          QueueConfigurations: [
            {
              QueueArn: arn,
              Events: ["s3:ObjectCreated:*"],
              Filter: { Key: { FilterRules: [{ Name: "suffix", Value: "_SUCCESS" }] } },
            },
          ],
        },
      }),
    );
  }
  const lat: number[] = [];
  for (let i = 0; i < LATENCY_SAMPLES; i++) {
    const id = `t${String(i).padStart(6, "0")}`;
    await putSlice(client, bucket, P, { id, shards: [1], complete: false });
    const found = new Promise<void>((resolve) => (waiting = (got) => got === id && resolve()));
    const key = `${P}${id}/_SUCCESS`;
    await putObject(client, bucket, key);
    t = performance.now();
    if (!arn) {
      const body = JSON.stringify({
        EventName: "s3:ObjectCreated:Put",
        Key: `${bucket}/${key}`,
        Records: [{ eventName: "s3:ObjectCreated:Put", s3: { bucket: { name: bucket }, object: { key } } }],
      });
      const res = await fetch(url, { method: "POST", body, headers: { authorization: `Bearer ${TOKEN}` } });
      if (res.status !== 200) throw new Error(`notification answered ${res.status}`);
    }
    await Promise.race([
      found,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`slice ${id} not discovered within 10 s of its notification`)), 10_000),
      ),
    ]);
    lat.push(performance.now() - t);
  }
  server.close();
  const how = arn ? "delivered by the S3 server's webhook" : "event posted by the benchmark (no S3_WEBHOOK_ARN)";
  console.log(
    `notification-to-discovery latency (${LATENCY_SAMPLES} slices, ${how}): p50 ${ms(quantile(lat, 0.5))}, p95 ${ms(quantile(lat, 0.95))}`,
  );

  // Planner: 1,000 slices with 100 shards each.
  const slices: PlannerSlice[] = Array.from({ length: 1000 }, (_, i) => ({
    id: `p${String(i).padStart(5, "0")}`,
    shards: Array.from({ length: 100 }, (_, j) => ({
      uri: `s3://${bucket}/${P}p${i}/shard-${j}.tar`,
      samples: 1000 + ((i * 7 + j) % 50),
    })),
  }));
  for (const replay of ["CumulativeAll", "CumulativeExp", "CumulativeEqual"] as const) {
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      t = performance.now();
      const r = planRound({
        replay,
        samplesPerRound: 184_000_000,
        bufferSamples: 0,
        round: 999,
        slices,
        newSliceIds: [slices[999]!.id],
      });
      times.push(performance.now() - t);
      if (!r.ok) throw new Error(r.message);
    }
    console.log(`planRound ${replay}, 1,000 slices / 100,000 shards: median ${ms(quantile(times, 0.5))}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
