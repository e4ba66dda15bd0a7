import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { classifyS3Error, sanitize } from "../../../operator/s3/errors.ts";
import { connectionFromSecret } from "../../../operator/s3/credentials.ts";
import {
  compareSliceIds,
  SLICE_ID_PATTERN,
  sliceIdProblem,
  sliceManifest,
} from "../../../operator/api/slice-manifest.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("classifyS3Error", () => {
  const cases = [
    { name: "SlowDown 503", err: { name: "SlowDown", $metadata: { httpStatusCode: 503 } }, cls: "Throttled" },
    { name: "429", err: { name: "TooManyRequests", $metadata: { httpStatusCode: 429 } }, cls: "Throttled" },
    {
      name: "InternalError 500",
      err: { name: "InternalError", $metadata: { httpStatusCode: 500 } },
      cls: "ServerError",
    },
    {
      name: "InvalidAccessKeyId 403",
      err: { name: "InvalidAccessKeyId", $metadata: { httpStatusCode: 403 } },
      cls: "InvalidCredentials",
    },
    {
      name: "SignatureDoesNotMatch 403",
      err: { name: "SignatureDoesNotMatch", $metadata: { httpStatusCode: 403 } },
      cls: "InvalidCredentials",
    },
    {
      name: "AccessDenied 403",
      err: { name: "AccessDenied", $metadata: { httpStatusCode: 403 } },
      cls: "AccessDenied",
    },
    {
      name: "NoSuchBucket 404",
      err: { name: "NoSuchBucket", $metadata: { httpStatusCode: 404 } },
      cls: "NoSuchBucket",
    },
    { name: "a socket timeout", err: { name: "TimeoutError", message: "socket hang up" }, cls: "Timeout" },
    {
      name: "connection refused",
      err: { name: "Error", code: "ECONNREFUSED", message: "connect ECONNREFUSED 127.0.0.1:1" },
      cls: "Network",
    },
    { name: "a 400", err: { name: "InvalidArgument", $metadata: { httpStatusCode: 400 } }, cls: "ClientError" },
  ] as const;
  for (const c of cases) {
    test(`classifies ${c.name} as ${c.cls}`, () => {
      const p = classifyS3Error(
        Object.assign(new Error((c.err as { message?: string }).message ?? c.err.name), c.err),
        "list s3://b/p/",
      );
      assert.equal(p.errorClass, c.cls);
      assert.equal(p.reason, `S3${c.cls}`);
      assert.equal(p.retryable, c.cls !== "ClientError");
      assert.match(p.message, /^list s3:\/\/b\/p\/: /);
    });
  }
  test("strips query strings (presigned credentials) from messages", () => {
    assert.equal(
      sanitize("GET https://b.s3.amazonaws.com/k?X-Amz-Signature=abc&X-Amz-Credential=AKIA failed"),
      "GET https://b.s3.amazonaws.com/k failed",
    );
  });
});

describe("connectionFromSecret", () => {
  const spec = { region: "eu-west-1", endpoint: "http://minio:9000", credentialsSecretRef: { name: "s3-creds" } };
  test("decodes the keys of the Secret's data", () => {
    const r = connectionFromSecret(spec, {
      data: { AWS_ACCESS_KEY_ID: b64("AKIA1"), AWS_SECRET_ACCESS_KEY: b64("s3cret/key+x") },
    });
    assert.deepEqual(r, {
      ok: true,
      connection: {
        region: "eu-west-1",
        endpoint: "http://minio:9000",
        addressingStyle: "Path",
        credentials: { accessKeyId: "AKIA1", secretAccessKey: "s3cret/key+x" },
      },
    });
  });
  test("uses the default chain when no Secret is named", () => {
    assert.deepEqual(connectionFromSecret({ region: "us-east-1" }, undefined), {
      ok: true,
      connection: { region: "us-east-1", endpoint: undefined, addressingStyle: "VirtualHost" },
    });
  });
  const bad = [
    { name: "a missing Secret", secret: undefined, reason: "SecretMissing" },
    { name: "a missing key", secret: { data: { AWS_ACCESS_KEY_ID: b64("a") } }, reason: "SecretKeyMissing" },
    {
      name: "a value that is not base64",
      secret: { data: { AWS_ACCESS_KEY_ID: "not base64!", AWS_SECRET_ACCESS_KEY: b64("x") } },
      reason: "SecretValueInvalid",
    },
    {
      name: "a value with a newline inside",
      secret: { data: { AWS_ACCESS_KEY_ID: b64("a\nb"), AWS_SECRET_ACCESS_KEY: b64("x") } },
      reason: "SecretValueInvalid",
    },
  ] as const;
  for (const c of bad) {
    test(`reports ${c.name}`, () => {
      const r = connectionFromSecret(spec, c.secret);
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.reason, c.reason);
    });
  }
});

describe("slice ids", () => {
  test("order of ids is S3's byte order of their folders", () => {
    const id = fc.stringMatching(SLICE_ID_PATTERN);
    fc.assert(
      fc.property(id, id, (a, b) => {
        const want = Math.sign(Buffer.compare(Buffer.from(`p/${a}/`), Buffer.from(`p/${b}/`)));
        assert.equal(Math.sign(compareSliceIds(a, b)), want);
      }),
    );
  });
  test("time-formatted ids sort in time order", () => {
    const ids = ["2017-03", "2016", "2017-11", "2017-04-01", "2018-01-01T00Z"];
    assert.deepEqual([...ids].sort(compareSliceIds), ["2016", "2017-03", "2017-04-01", "2017-11", "2018-01-01T00Z"]);
  });
  for (const bad of ["", ".", "..", "-x", "a/b", "a b", "é", "x".repeat(129)]) {
    test(`rejects ${JSON.stringify(bad.slice(0, 12))}`, () => assert.notEqual(sliceIdProblem(bad), undefined));
  }
  test("the manifest schema rejects keys escaping the slice folder", () => {
    for (const key of ["../x.tar", "/x.tar", "a//b.tar", "a/./b.tar", "dir/"]) {
      const r = sliceManifest.safeParse({
        sliceId: "2016",
        createdAt: "2024-01-01T00:00:00Z",
        numSamples: 1,
        shards: [{ key, samples: 1, bytes: 1 }],
      });
      assert.equal(r.success, false, key);
    }
  });
});
