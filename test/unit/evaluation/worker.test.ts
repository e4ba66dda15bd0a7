import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { evaluateRound } from "../../../operator/evaluation/evaluate.ts";
import { MemoryObjectStore } from "../../../operator/s3/object-store.ts";

const request = {
  round: 2,
  roundUri: "s3://r/rounds/0002/",
  roundSlices: ["2018"],
  retrieval: [],
  zeroShot: [],
  k: [1],
  previousRows: [],
  now: "2026-06-01T00:00:00Z",
};

describe("evaluateRound in a worker thread", () => {
  test("reads the caller's store through the worker and returns a Failed result for bad input", async () => {
    const store = new MemoryObjectStore();
    store.objects.set("s3://r/rounds/0002/model.json", new TextEncoder().encode("{not json"));
    const r = await evaluateRound(store, request);
    assert.equal(r.status, "Failed");
    assert.ok(r.status === "Failed" && r.reason === "InvalidModel");
    assert.match(r.message, /^s3:\/\/r\/rounds\/0002\/model\.json: not JSON/);
    assert.equal(
      store.objects.get("s3://r/rounds/0002/model.json")!.length,
      9,
      "the store's bytes are copied, not moved",
    );
  });

  test("a store error reaches the caller as the store's own error object", async () => {
    const boom = Object.assign(new Error("S3 is down"), { name: "S3Failure", retryable: true });
    const store = new MemoryObjectStore();
    store.get = async () => {
      throw boom;
    };
    await assert.rejects(evaluateRound(store, request), (e) => e === boom);
  });
});
