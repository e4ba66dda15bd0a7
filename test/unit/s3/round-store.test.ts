// RoundStore reads a run's documents within a budget of bytes at once, reserving what its listing
// showed: small documents side by side, large ones one at a time, and an endpoint that lists small
// objects and serves large ones cannot make a run hold more than the budget.
import { test } from "node:test";
import assert from "node:assert/strict";
import { roundFiles } from "../../support/rounds.ts";
import { DOCUMENT_LIMITS } from "../../../operator/s3/documents.ts";
import { MemoryObjectStore, type ReadLimit } from "../../../operator/s3/object-store.ts";
import { READ_BUDGET_BYTES, RoundStore } from "../../../operator/s3/round-store.ts";

/** A store that answers reads after a turn of the event loop and records the limits in flight. */
function watched() {
  const objects = new MemoryObjectStore();
  let inFlight = 0;
  let most = 0;
  let concurrent = 0;
  let mostConcurrent = 0;
  const get = objects.get.bind(objects);
  objects.get = async (uri: string, limit?: ReadLimit) => {
    const bytes = limit?.maxBytes ?? 0;
    inFlight += bytes;
    concurrent++;
    most = Math.max(most, inFlight);
    mostConcurrent = Math.max(mostConcurrent, concurrent);
    try {
      await new Promise((r) => setTimeout(r, 5));
      return await get(uri, limit);
    } finally {
      inFlight -= bytes;
      concurrent--;
    }
  };
  return { objects, most: () => most, mostConcurrent: () => mostConcurrent };
}

test("listed small documents are read side by side; the bytes reserved never pass the budget", async () => {
  const w = watched();
  for (let i = 0; i < 8; i++)
    for (const [key, body] of roundFiles("runs", "demo/", i, {})) await w.objects.put(`s3://runs/${key}`, body);
  const store = new RoundStore(w.objects, { bucket: "runs", prefix: "demo/" });
  await store.listRounds();
  const reads = await Promise.all(Array.from({ length: 8 }, (_, i) => store.readDocument(i, "plan.json")));
  assert.ok(reads.every((r) => r && "value" in r));
  assert.ok(w.mostConcurrent() > 1, "small plans are not read one at a time");
  assert.ok(w.most() <= READ_BUDGET_BYTES, `${w.most()} bytes reserved at once`);
});

test("unlisted, a plan reserves the limit of its kind: one at a time", async () => {
  const w = watched();
  for (let i = 0; i < 3; i++)
    for (const [key, body] of roundFiles("runs", "demo/", i, {})) await w.objects.put(`s3://runs/${key}`, body);
  const store = new RoundStore(w.objects, { bucket: "runs", prefix: "demo/" });
  await Promise.all([0, 1, 2].map((i) => store.readDocument(i, "plan.json")));
  assert.equal(w.mostConcurrent(), 1);
  assert.equal(w.most(), DOCUMENT_LIMITS.plan);
});

test("a document larger than it was listed is read again with the limit of its kind reserved", async () => {
  const w = watched();
  for (let i = 0; i < 4; i++)
    for (const [key, body] of roundFiles("runs", "demo/", i, {})) await w.objects.put(`s3://runs/${key}`, body);
  const store = new RoundStore(w.objects, { bucket: "runs", prefix: "demo/" });
  await store.listRounds();
  // Replaced after the listing by a valid plan 200 KiB larger (an endpoint that lists small and serves large).
  const uri = "s3://runs/demo/rounds/0000/plan.json";
  const plan = JSON.parse(new TextDecoder().decode(w.objects.objects.get(uri)));
  plan.newSlices = [...plan.newSlices, ..."x".repeat(200 * 1024).match(/.{1,100}/g)!];
  await w.objects.put(uri, JSON.stringify(plan));
  const reads = await Promise.all([0, 1, 2, 3].map((i) => store.readDocument(i, "plan.json")));
  assert.ok(
    reads.every((r) => r && "value" in r),
    "read whole, not refused as too large",
  );
  assert.ok(w.most() <= READ_BUDGET_BYTES, `${w.most()} bytes reserved at once`);
});
