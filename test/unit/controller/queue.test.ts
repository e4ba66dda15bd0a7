import { test } from "node:test";
import assert from "node:assert/strict";
import { WorkQueue, type Outcome } from "../../../operator/controller/queue.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("a key is never processed twice at once, and an add during processing re-runs it", async () => {
  let active = 0;
  let maxActive = 0;
  let runs = 0;
  const q = new WorkQueue(
    async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      runs++;
      await sleep(20);
      active--;
      return { kind: "done" };
    },
    { concurrency: 4 },
  );
  q.add("ns/a");
  await sleep(5);
  q.add("ns/a");
  q.add("ns/a");
  await sleep(100);
  await q.idle();
  assert.equal(maxActive, 1);
  assert.equal(runs, 2, "the adds during processing collapse into one re-run");
});

test("distinct keys run concurrently up to the bound", async () => {
  let active = 0;
  let maxActive = 0;
  const q = new WorkQueue(
    async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      await sleep(20);
      active--;
      return { kind: "done" };
    },
    { concurrency: 3 },
  );
  for (let i = 0; i < 10; i++) q.add(`ns/k${i}`);
  await sleep(10);
  await q.idle();
  assert.equal(maxActive, 3);
});

test("failures back off exponentially per key and success resets", async () => {
  const delays: number[] = [];
  let calls = 0;
  const q = new WorkQueue(
    async (): Promise<Outcome> => {
      calls++;
      return calls < 5 ? { kind: "retry", error: new Error("boom") } : { kind: "done" };
    },
    { concurrency: 1, baseBackoffMs: 5, onError: (_k, _e, ms) => delays.push(ms) },
  );
  q.add("ns/a");
  // Waits for the fifth call, not a fixed time: a loaded CI machine runs timers late.
  for (const deadline = Date.now() + 30_000; calls < 5 && Date.now() < deadline; ) await sleep(5);
  await q.idle();
  assert.deepEqual(delays, [5, 10, 20, 40]);
  assert.equal(calls, 5);
  q.stop();
});

test("a thrown error is a retry, requeueAfter fires later, stalled does not requeue", async () => {
  const seen: string[] = [];
  const q = new WorkQueue(
    async (key): Promise<Outcome> => {
      seen.push(key);
      if (key === "ns/throw" && seen.filter((k) => k === key).length === 1) throw new Error("x");
      if (key === "ns/later" && seen.filter((k) => k === key).length === 1) return { kind: "requeueAfter", ms: 30 };
      return { kind: "stalled" };
    },
    { concurrency: 2, baseBackoffMs: 5 },
  );
  q.add("ns/throw");
  q.add("ns/later");
  q.add("ns/stalled");
  const count = (k: string) => seen.filter((x) => x === k).length;
  // Waits for the retries, not a fixed time: a loaded CI machine runs timers late.
  for (
    const deadline = Date.now() + 30_000;
    (count("ns/throw") < 2 || count("ns/later") < 2) && Date.now() < deadline;
  )
    await sleep(5);
  await sleep(50);
  assert.equal(seen.filter((k) => k === "ns/throw").length, 2);
  assert.equal(seen.filter((k) => k === "ns/later").length, 2);
  assert.equal(seen.filter((k) => k === "ns/stalled").length, 1);
  q.stop();
});

test("addAfter keeps the earliest timer", async (t) => {
  // Mocked timers: the test says which timer fires when, whatever the machine's load.
  t.mock.timers.enable({ apis: ["setTimeout"] });
  let runs = 0;
  const q = new WorkQueue(
    async () => {
      runs++;
      return { kind: "done" };
    },
    { concurrency: 1 },
  );
  q.addAfter("ns/a", 200);
  q.addAfter("ns/a", 20);
  q.addAfter("ns/a", 300);
  t.mock.timers.tick(19);
  await q.idle();
  assert.equal(runs, 0, "nothing runs before the earliest timer");
  t.mock.timers.tick(1);
  await q.idle();
  assert.equal(runs, 1, "the earliest timer runs the key");
  t.mock.timers.tick(400);
  await q.idle();
  assert.equal(runs, 1, "the later timers were dropped");
  q.stop();
});

test("after stop() with keys still queued, idle() resolves once the keys in flight finish", async () => {
  let release: () => void = () => {};
  const started: string[] = [];
  const q = new WorkQueue(
    async (key) => {
      started.push(key);
      if (key === "a") await new Promise<void>((r) => (release = r));
      return { kind: "done" };
    },
    { concurrency: 1 },
  );
  q.add("a");
  q.add("b");
  q.add("c");
  q.stop();
  let idle = false;
  const waiting = q.idle().then(() => (idle = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(idle, false, "a is still in flight");
  release();
  await waiting;
  assert.deepEqual(started, ["a"], "queued keys are dropped, not run after stop");
});
