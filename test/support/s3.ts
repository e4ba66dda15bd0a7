// S3 helpers for integration tests and benchmarks against the local S3 server (MinIO), whose
// connection dev/cluster.sh writes to .local/cluster/s3.env. A missing variable or an unreachable
// server fails the test: skipping would prove nothing.
import { randomBytes } from "node:crypto";
import { CreateBucketCommand, ListBucketsCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import type { S3Connection } from "../../operator/api/s3-connection.ts";
import { createS3Client } from "../../operator/s3/client.ts";

function env(name: string): string {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: source .local/cluster/s3.env (npm test does) or run dev/cluster.sh up`);
  return v;
}

/** The local S3 server's connection from S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION. */
export function s3Connection(): S3Connection {
  return {
    region: process.env.AWS_REGION || "us-east-1",
    endpoint: env("S3_ENDPOINT"),
    addressingStyle: "Path",
    credentials: { accessKeyId: env("AWS_ACCESS_KEY_ID"), secretAccessKey: env("AWS_SECRET_ACCESS_KEY") },
  };
}

export type RequestCounter = { total: number; byCommand: Map<string, number>; reset(): void };

/** A client for the local server; with count, every HTTP attempt (retries included) is counted. */
export function s3Client(options: { count?: RequestCounter } = {}): S3Client {
  const client = createS3Client(s3Connection());
  const counter = options.count;
  if (counter) {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        counter.total++;
        const name = context.commandName ?? "unknown";
        counter.byCommand.set(name, (counter.byCommand.get(name) ?? 0) + 1);
        return next(args);
      },
      // After the retry middleware, so each attempt on the wire counts.
      { step: "finalizeRequest", priority: "low", name: "testRequestCounter" },
    );
  }
  return client;
}

export function requestCounter(): RequestCounter {
  const c: RequestCounter = {
    total: 0,
    byCommand: new Map(),
    reset() {
      c.total = 0;
      c.byCommand.clear();
    },
  };
  return c;
}

/** Fails with a clear message when the server does not answer. */
export async function assertS3Reachable(client: S3Client): Promise<void> {
  try {
    await client.send(new ListBucketsCommand({}));
  } catch (err) {
    throw new Error(`local S3 server at ${process.env.S3_ENDPOINT} is unreachable: ${(err as Error).message}`);
  }
}

/** Creates a fresh bucket named <base>-<random> and returns its name. */
export async function createBucket(client: S3Client, base = "test"): Promise<string> {
  await assertS3Reachable(client);
  const bucket = `${base}-${randomBytes(4).toString("hex")}`;
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

export async function putObject(
  client: S3Client,
  bucket: string,
  key: string,
  body: string | Uint8Array = "",
): Promise<void> {
  const bytes = typeof body === "string" ? Buffer.from(body, "utf-8") : body;
  // An explicit length: the SDK warns about bodies of unknown length (empty ones included).
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: bytes, ContentLength: bytes.byteLength }));
}

/** Runs fn over items with at most `limit` in flight. */
export async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}
