// The chart's default values satisfy the zod schema that values.schema.json is generated from.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { chartValues } from "../../../operator/api/chart-values.ts";
import { REPO_ROOT } from "../../../operator/api/gen-artifacts.ts";

const defaults = YAML.parse(readFileSync(path.join(REPO_ROOT, "charts/continual-clip-operator/values.yaml"), "utf8"));

test("the chart's values.yaml is valid against its schema", () => {
  const parsed = chartValues.safeParse(defaults);
  assert.ok(parsed.success, parsed.success ? "" : JSON.stringify(parsed.error.issues));
});

test("a misspelt value is rejected with its path", () => {
  const parsed = chartValues.safeParse({ ...defaults, watchNamespace: ["a"] });
  assert.equal(parsed.success, false);
  assert.match(JSON.stringify(parsed.error?.issues), /watchNamespace/);
});
