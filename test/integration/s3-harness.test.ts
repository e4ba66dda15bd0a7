// The local S3 server (MinIO) through @aws-sdk/client-s3 with a custom endpoint and path-style.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { createS3Client } from "../../operator/s3/client.ts";
import { requireEnv } from "../support/cluster.ts";
import { s3Connection } from "../support/s3.ts";

test("create a bucket, put and list objects on the local S3 server", async () => {
  const s3 = createS3Client({ ...s3Connection(), region: requireEnv("AWS_REGION") });
  const bucket = `harness-${randomBytes(4).toString("hex")}`;
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  for (const key of ["slices/2016/_SUCCESS", "slices/2017/_SUCCESS", "slices/2017/manifest.json"]) {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: key }));
  }
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: "slices/", Delimiter: "/" }));
  assert.deepEqual(
    listed.CommonPrefixes?.map((p) => p.Prefix),
    ["slices/2016/", "slices/2017/"],
  );
  const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "slices/2017/manifest.json" }));
  assert.equal(await got.Body!.transformToString(), "slices/2017/manifest.json");
});
