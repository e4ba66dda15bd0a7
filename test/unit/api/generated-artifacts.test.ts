// crds/ and the trainer's RoundPlan JSON Schema are generated from the zod schemas: stale = fail.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { GENERATED_FILES, REPO_ROOT } from "../../../operator/api/gen-artifacts.ts";

for (const [file, render] of GENERATED_FILES) {
  test(`${path.relative(REPO_ROOT, file)} is up to date (run \`npm run gen\`)`, () => {
    assert.equal(readFileSync(file, "utf8"), render());
  });
}
