// The S3 connection of a run, from the spec to every client that uses it: the operator's S3
// client, the pods of the trainer and evaluator Jobs, and the evaluator's client built back from
// that environment.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import {
  addressingStyleOf,
  connectionEnv,
  connectionFromEnv,
  connectionOf,
  S3_ENV,
  type S3Connection,
} from "../../../operator/api/s3-connection.ts";
import { buildEvalJob } from "../../../operator/evaluation/job.ts";
import { createS3Client } from "../../../operator/s3/client.ts";
import { connectionFromSecret } from "../../../operator/s3/credentials.ts";
import { buildTrainJob } from "../../../operator/training/job.ts";

const RUN = { name: "demo", namespace: "ns", uid: "uid-1", generation: 1 };
const spec = (s3: Record<string, unknown>) =>
  continualClipRunSpec.parse({
    source: { s3: { bucket: "data", credentialsSecretRef: { name: "s3-creds" }, ...s3 } },
    model: { architecture: "ViT-B-16" },
    strategy: { samplesPerRound: 1000 },
    trainer: { image: "trainer:1", gpusPerNode: 8 },
    artifacts: { s3: { bucket: "runs" } },
  });

/** The URL the client would send a GetObject to: a finalize-step middleware stops it before the wire. */
async function requestUrl(conn: S3Connection, bucket: string, key: string): Promise<string> {
  const client = createS3Client({ ...conn, credentials: { accessKeyId: "k", secretAccessKey: "s" } });
  client.middlewareStack.add(
    () => async (args) => {
      const r = args.request as { protocol: string; hostname: string; port?: number; path: string };
      throw Object.assign(new Error("stopped"), {
        url: `${r.protocol}//${r.hostname}${r.port ? `:${r.port}` : ""}${r.path}`,
      });
    },
    { step: "finalizeRequest", name: "captureUrl", priority: "low" },
  );
  try {
    await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  } catch (e) {
    if ((e as { url?: string }).url) return (e as { url: string }).url;
    throw e;
  }
  throw new Error("the request was sent");
}

describe("S3 connection", () => {
  test("addressing defaults to Path with a custom endpoint and VirtualHost without", () => {
    assert.equal(addressingStyleOf({ endpoint: "http://minio:9000" }), "Path");
    assert.equal(addressingStyleOf({}), "VirtualHost");
    assert.equal(addressingStyleOf({ endpoint: "http://minio:9000", addressingStyle: "VirtualHost" }), "VirtualHost");
    assert.equal(addressingStyleOf({ addressingStyle: "Path" }), "Path");
  });

  test("trainer and evaluator pods get the same S3 environment, from one builder", () => {
    const s = spec({ endpoint: "http://minio:9000", addressingStyle: "VirtualHost" });
    const envOf = (job: Record<string, any>) =>
      Object.fromEntries(
        job.spec.template.spec.containers[0].env
          .filter((e: { name: string }) => Object.values(S3_ENV).includes(e.name as never))
          .map((e: { name: string; value: string }) => [e.name, e.value]),
      );
    const want = { AWS_REGION: "us-east-1", S3_ENDPOINT: "http://minio:9000", S3_ADDRESSING_STYLE: "VirtualHost" };
    assert.deepEqual(connectionEnv(s.source.s3), want);
    assert.deepEqual(
      envOf(buildTrainJob({ run: RUN, spec: s, round: 2, planUri: "s3://runs/rounds/0002/plan.json" })),
      want,
    );
    const request = { spec: s, run: RUN, round: 2, roundSlices: ["2018"], slices: ["2018"] };
    assert.deepEqual(envOf(buildEvalJob({ run: RUN, spec: s, image: "operator:1", request })), want);
  });

  test("the evaluator reads back the connection the operator resolved from the spec", () => {
    for (const s3 of [
      {},
      { endpoint: "http://minio:9000" },
      { endpoint: "http://ceph:80", addressingStyle: "VirtualHost" },
    ]) {
      const source = spec(s3).source.s3;
      assert.deepEqual(connectionFromEnv(connectionEnv(source)), connectionOf(source));
    }
    assert.throws(() => connectionFromEnv({ [S3_ENV.addressingStyle]: "path" }), /S3_ADDRESSING_STYLE=path/);
  });

  test("the operator's connection from a Secret keeps the spec's addressing style", () => {
    const data = { AWS_ACCESS_KEY_ID: btoa("AKIA"), AWS_SECRET_ACCESS_KEY: btoa("secret") };
    const r = connectionFromSecret(spec({ endpoint: "http://minio:9000", addressingStyle: "VirtualHost" }).source.s3, {
      data,
    });
    assert.ok(r.ok);
    assert.equal(r.connection.addressingStyle, "VirtualHost");
  });

  test("the S3 client puts the bucket in the path or in the host name as the connection says", async () => {
    const base = { region: "us-east-1", endpoint: "http://minio:9000" };
    assert.equal(
      await requestUrl({ ...base, addressingStyle: "Path" }, "data", "a/b.tar"),
      "http://minio:9000/data/a/b.tar",
    );
    assert.equal(
      await requestUrl({ ...base, addressingStyle: "VirtualHost" }, "data", "a/b.tar"),
      "http://data.minio:9000/a/b.tar",
    );
    assert.equal(
      await requestUrl({ region: "eu-west-1", addressingStyle: "VirtualHost" }, "data", "k"),
      "https://data.s3.eu-west-1.amazonaws.com/k",
    );
    assert.equal(
      await requestUrl({ region: "eu-west-1", addressingStyle: "Path" }, "data", "k"),
      "https://s3.eu-west-1.amazonaws.com/data/k",
    );
  });
});
