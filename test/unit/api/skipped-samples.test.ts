// The operator reads the trainer's skip counts (train_summary.json's skippedSamples) by reason: the
// reasons are spelled in two languages, so they must be the same list.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT } from "../../../operator/api/gen-artifacts.ts";
import { SKIP_REASONS } from "../../../operator/api/skipped-samples.ts";

test("the operator's skip reasons are the trainer's data.py SKIP_REASONS, in order", () => {
  const source = readFileSync(path.join(REPO_ROOT, "trainer-image/src/ticclip_trainer/data.py"), "utf8");
  const tuple = /^SKIP_REASONS = \(([\s\S]*?)^\)/m.exec(source);
  assert.ok(tuple, "data.py defines SKIP_REASONS as a tuple");
  const reasons = [...tuple[1]!.matchAll(/^\s*"(\w+)",/gm)].map((m) => m[1]);
  assert.deepEqual(reasons, [...SKIP_REASONS]);
});
