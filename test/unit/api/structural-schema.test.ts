import { test } from "node:test";
import assert from "node:assert/strict";
import { z } from "zod";
import { toStructuralSchema } from "../../../operator/api/structural-schema.ts";
import { quantity } from "../../../operator/api/common.ts";

test("strips what the API server rejects and keeps what it needs", () => {
  const s = toStructuralSchema(
    z.object({ a: z.int().default(3), q: quantity, m: z.record(z.string(), z.string()) }).strict(),
  );
  assert.equal(s.$schema, undefined);
  assert.equal(s.additionalProperties, undefined, "additionalProperties:false beside properties is not structural");
  const props = s.properties as Record<string, Record<string, unknown>>;
  assert.deepEqual(props.a, { default: 3, type: "integer" });
  assert.equal(props.q!["x-kubernetes-int-or-string"], true);
  assert.equal(props.q!.anyOf, undefined);
  assert.equal(typeof props.q!.pattern, "string");
  assert.deepEqual(props.m, { type: "object", additionalProperties: { type: "string" } });
});

test("refuses unions it cannot express structurally", () => {
  assert.throws(
    () => toStructuralSchema(z.object({ x: z.union([z.string(), z.object({ y: z.string() })]) })),
    /not structural/,
  );
});
