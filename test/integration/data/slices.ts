// Writes data slices to the local S3 server the way the trainer's make-slice tool does:
// shards, manifest.json, then _SUCCESS last.
import type { S3Client } from "@aws-sdk/client-s3";
import { inParallel, putObject } from "../../support/s3.ts";

export type SliceSpec = { id: string; shards?: number[]; complete?: boolean; manifest?: unknown };

export function manifestFor(id: string, shards: number[]) {
  const list = shards.map((samples, i) => ({ key: `shard-${String(i).padStart(5, "0")}.tar`, samples, bytes: 16 + i }));
  return {
    sliceId: id,
    createdAt: "2024-01-01T00:00:00Z",
    numSamples: shards.reduce((a, b) => a + b, 0),
    shards: list,
  };
}

export async function putSlice(client: S3Client, bucket: string, prefix: string, s: SliceSpec): Promise<void> {
  const shards = s.shards ?? [10, 20];
  const m = manifestFor(s.id, shards);
  await Promise.all(
    m.shards.map((sh) => putObject(client, bucket, `${prefix}${s.id}/${sh.key}`, "x".repeat(sh.bytes))),
  );
  const manifest = s.manifest ?? m;
  await putObject(
    client,
    bucket,
    `${prefix}${s.id}/manifest.json`,
    typeof manifest === "string" ? manifest : JSON.stringify(manifest),
  );
  if (s.complete !== false) await putObject(client, bucket, `${prefix}${s.id}/_SUCCESS`);
}

/** Many one-shard slices, written concurrently (each slice still puts _SUCCESS last). */
export async function putManySlices(
  client: S3Client,
  bucket: string,
  prefix: string,
  ids: string[],
  concurrency = 64,
): Promise<void> {
  await inParallel(ids, concurrency, (id) => putSlice(client, bucket, prefix, { id, shards: [1] }));
}
