// The only module that builds S3 clients. Custom endpoints (MinIO, Ceph) use path-style addressing.
import { S3Client } from "@aws-sdk/client-s3";

export type S3Connection = {
  region: string;
  endpoint?: string | undefined;
  /** Static keys (from a Secret); omitted means the default AWS chain (env, IRSA, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
};

export function createS3Client(conn: S3Connection): S3Client {
  return new S3Client({
    region: conn.region,
    ...(conn.endpoint ? { endpoint: conn.endpoint, forcePathStyle: true } : {}),
    ...(conn.credentials ? { credentials: conn.credentials } : {}),
    maxAttempts: 3,
  });
}

/** Splits s3://bucket/key into its parts. */
export function parseS3Uri(uri: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)\/(.*)$/.exec(uri);
  if (!m) throw new Error(`not an s3:// URI: ${uri}`);
  return { bucket: m[1]!, key: m[2]! };
}
