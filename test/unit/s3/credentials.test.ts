// The S3 connection of a run from its spec and Secret (operator/s3/credentials.ts).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { connectionFromSecret } from "../../../operator/s3/credentials.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");

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
