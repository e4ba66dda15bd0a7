// A merged round (plan.merge) keeps its trained weights in raw/: the evaluate request names them, so
// eval.json scores them beside the merge; a round without raw/ is scored alone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { EVAL_REQUEST_SCHEMA_VERSION, type EvalRequest } from "../../../operator/api/eval-request.ts";
import { UNMERGED_DIR } from "../../../operator/api/round-plan.ts";
import { buildEvaluateRequest } from "../../../operator/evaluation/request.ts";
import { MemoryObjectStore } from "../../../operator/s3/object-store.ts";

const ROUND = "s3://runs/demo/rounds/0001/";
const request: EvalRequest = {
  schemaVersion: EVAL_REQUEST_SCHEMA_VERSION,
  run: { namespace: "ns", name: "demo", uid: "u" },
  round: 1,
  roundUri: ROUND,
  roundSlices: ["2017"],
  sourceUri: "s3://data/slices/",
  slices: [],
  zeroShot: [],
  k: [1],
  executionProvider: "cpu",
  batchSize: 64,
};

test("the unmerged model is scored when raw/model.json is there, and only then", async () => {
  const store = new MemoryObjectStore();
  const plain = await buildEvaluateRequest(store, request, "2026-06-01T00:00:00Z");
  assert.equal(plain.unmerged, undefined);
  await store.put(`${ROUND}${UNMERGED_DIR}model.json`, "{}");
  const merged = await buildEvaluateRequest(store, request, "2026-06-01T00:00:00Z");
  assert.deepEqual(merged.unmerged, { uri: `${ROUND}raw/` });
  assert.equal(merged.roundUri, ROUND, "the merge stays the candidate the gates judge");
});
