// withRules: one CEL rule, enforced by zod the way the API server enforces it from the CRD.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { z } from "zod";
import { withRules } from "../../../operator/api/cel.ts";
import { continualClipRun, RUN_NAME_RULES } from "../../../operator/api/continual-clip-run.ts";
import { toStructuralSchema } from "../../../operator/api/structural-schema.ts";
import { evalJobName, trainJobName, trainServiceName } from "../../../operator/kube/objects.ts";

describe("withRules", () => {
  const pair = withRules(
    z.object({ n: z.int(), d: z.number(), opt: z.string().optional() }),
    { rule: "self.n % 2 == 0", message: "n must be even", fieldPath: ".n" },
    { rule: "!has(self.opt) || self.opt.size() <= self.n", message: "opt longer than n" },
  );

  test("evaluates integer fields as CEL ints, so % works as on the API server", () => {
    assert.ok(pair.safeParse({ n: 4, d: 1.5 }).success);
    const r = pair.safeParse({ n: 3, d: 1.5 });
    assert.deepEqual(
      r.error?.issues.map((i) => [i.path, i.message]),
      [[["n"], "n must be even"]],
    );
  });

  test("an absent optional field is absent to has()", () => {
    assert.ok(pair.safeParse({ n: 2, d: 0 }).success);
    assert.equal(pair.safeParse({ n: 2, d: 0, opt: "abc" }).error?.issues[0]?.message, "opt longer than n");
  });

  test("judges only values that passed their schema", () => {
    const r = pair.safeParse({ n: 3.5, d: 0 });
    assert.equal(r.error?.issues.length, 1);
    assert.equal(r.error?.issues[0]?.code, "invalid_type");
  });

  test("issue paths stay correct when a schema is used at several places", () => {
    const outer = z.object({ a: z.array(pair), b: pair });
    const r = outer.safeParse({
      a: [
        { n: 2, d: 0 },
        { n: 1, d: 0 },
      ],
      b: { n: 1, d: 0 },
    });
    assert.deepEqual(
      r.error?.issues.map((i) => i.path),
      [
        ["a", 1, "n"],
        ["b", "n"],
      ],
    );
    const again = outer.safeParse({ a: [{ n: 1, d: 0 }], b: { n: 2, d: 0 } });
    assert.deepEqual(
      again.error?.issues.map((i) => i.path),
      [["a", 0, "n"]],
    );
  });

  test("carries the rules into the CRD schema, keeping the description", () => {
    const s = toStructuralSchema(pair.describe("a pair"));
    assert.equal(s.description, "a pair");
    assert.deepEqual((s["x-kubernetes-validations"] as unknown[]).length, 2);
  });
});

describe("run name rules", () => {
  const withName = (name: string, nodes: number) => ({
    apiVersion: "ticclip.dev/v1alpha1",
    kind: "ContinualClipRun",
    metadata: { name },
    spec: {
      source: { s3: { bucket: "data" } },
      model: { architecture: "ViT-B-32" },
      strategy: { samplesPerRound: 1000 },
      trainer: { image: "trainer:1", nodes, gpusPerNode: 1 },
      artifacts: { s3: { bucket: "runs" } },
    },
  });
  const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
  const DNS_1035 = /^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/;
  const names = fc.stringMatching(/^[a-z0-9.-]{1,80}$/).filter((s) => /^[a-z0-9]/.test(s) && /[a-z0-9]$/.test(s));

  test("every accepted name gives valid child names; rejected names say why", () => {
    fc.assert(
      fc.property(names, fc.constantFrom(1, 2, 4), (name, nodes) => {
        const r = continualClipRun.safeParse(withName(name, nodes));
        if (!r.success) {
          const messages = r.error.issues.filter((i) => i.path.join(".") === "metadata.name").map((i) => i.message);
          assert.ok(messages.length > 0, `${name}: rejected without a metadata.name issue`);
          assert.ok(messages.every((m) => RUN_NAME_RULES.some((rule) => rule.message === m)));
          return;
        }
        for (const round of [0, 7, 9999]) {
          assert.match(trainJobName(name, round), DNS_LABEL);
          assert.match(evalJobName(name, round), DNS_LABEL);
          if (nodes > 1) {
            assert.match(trainServiceName(name, round), DNS_1035);
            // The Job controller sets each indexed pod's hostname to <job>-<index>, unshortened.
            assert.match(`${trainJobName(name, round)}-${1023}`, DNS_LABEL);
          }
        }
      }),
      { numRuns: 500 },
    );
  });

  test("a dotted name and a multi-node name starting with a digit are rejected", () => {
    assert.equal(continualClipRun.safeParse(withName("a.b", 1)).success, false);
    assert.equal(continualClipRun.safeParse(withName("2024-run", 2)).success, false);
    assert.ok(continualClipRun.safeParse(withName("2024-run", 1)).success);
  });
});
