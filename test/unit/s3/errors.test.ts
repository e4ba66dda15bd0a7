// S3 error classification and message sanitising (operator/s3/errors.ts).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { classifyS3Error, sanitize } from "../../../operator/s3/errors.ts";

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
