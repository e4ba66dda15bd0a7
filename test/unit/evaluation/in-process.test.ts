// Issue 21 item 11: in-process evaluation runs a run's models inside the shared operator, so it is
// the administrator's choice, bounded (worker heap, bytes read, deadline) and cancellable.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Reconciler } from "../../../operator/controller/reconcile.ts";
import { evaluateRound } from "../../../operator/evaluation/evaluate.ts";
import { MemoryObjectStore } from "../../../operator/s3/object-store.ts";
import { roundFiles } from "../../support/rounds.ts";
import { putSlice } from "../data/memory-store.ts";
import { demoRun, FakeChildren, FakeEvents, FakeRuns, memoryStorage, quietLog } from "../controller/fakes.ts";

const request = {
  round: 0,
  roundUri: "s3://runs/demo/rounds/0000/",
  roundSlices: ["2016"],
  retrieval: [],
  zeroShot: [],
  k: [1],
  previousRows: [],
  now: "2026-06-01T00:00:00Z",
};
const MODEL_JSON = "s3://runs/demo/rounds/0000/model.json";

/** A store whose model.json read never answers until released (a slow S3, a huge file). */
function stalledStore() {
  const store = new MemoryObjectStore();
  let release: () => void = () => {};
  const get = store.get.bind(store);
  store.get = async (uri, limit) => {
    if (uri === MODEL_JSON) await new Promise<void>((r) => (release = r));
    return get(uri, limit);
  };
  return { store, release: () => release() };
}

describe("an in-process evaluation", { timeout: 60_000 }, () => {
  test("past its deadline is terminated and judged Failed (InProcessLimitExceeded), not retried", async () => {
    const { store, release } = stalledStore();
    const r = await evaluateRound(store, request, { limits: { timeoutMs: 300 } });
    release();
    assert.equal(r.status, "Failed");
    assert.ok(r.status === "Failed" && r.reason === "InProcessLimitExceeded");
    assert.match(
      r.message,
      /took longer than 300 ms: evaluate this run in a Job \(spec\.evaluation\.runner\.mode: Job\)/,
    );
  });

  test("that reads more than its budget is stopped at that read", async () => {
    const store = new MemoryObjectStore();
    await store.put(MODEL_JSON, "{}");
    const r = await evaluateRound(store, request, { limits: { readBytes: 1 } });
    assert.ok(r.status === "Failed" && r.reason === "InProcessLimitExceeded", JSON.stringify(r));
    assert.match(r.message, /read more than 1 bytes \(at s3:\/\/runs\/demo\/rounds\/0000\/model\.json\)/);
  });

  test("whose worker outgrows its heap limit is judged Failed, and the operator's own heap is untouched", async () => {
    const store = new MemoryObjectStore();
    // A 4 MiB old generation cannot even load the scorer's modules.
    const r = await evaluateRound(store, request, { limits: { heapMb: 4 } });
    assert.ok(r.status === "Failed" && r.reason === "InProcessLimitExceeded", JSON.stringify(r));
    assert.match(r.message, /ran out of its 4 MiB heap/);
  });

  test("is cancelled when its signal aborts (leadership lost): the reason, and no result", async () => {
    const { store, release } = stalledStore();
    const abort = new AbortController();
    const running = evaluateRound(store, request, { signal: abort.signal });
    setTimeout(() => abort.abort(new Error("leadership lost")), 100);
    await assert.rejects(running, /leadership lost/);
    release();
  });
});

describe("in-process evaluation is the operator administrator's choice", () => {
  function world(inProcessEvaluation: boolean | undefined, scoreForReal = false) {
    const runs = new FakeRuns();
    const s3 = memoryStorage();
    runs.add(demoRun({ evaluation: { runner: { mode: "InProcess" } } }));
    putSlice(s3.slices, "slices/", "2016");
    // The request reads slice manifests through the object store (evaluation/request.ts).
    void s3.objects.put("s3://data/slices/2016/manifest.json", s3.slices.objects.get("slices/2016/manifest.json")!);
    for (const [key, body] of roundFiles("runs", "demo/", 0, {})) void s3.objects.put(`s3://runs/${key}`, body);
    const evaluated: number[] = [];
    const reconciler = new Reconciler({
      runs,
      children: new FakeChildren(),
      events: new FakeEvents(),
      log: quietLog,
      storage: () => s3.storage,
      // The run names no Secret: the operator's own identity (here: in-memory S3) is allowed.
      allowDefaultCredentials: true,
      evaluatorImage: "operator:1",
      inProcessEvaluation,
      ...(scoreForReal
        ? {}
        : {
            evaluate: async (_o, req) => {
              evaluated.push(req.round);
              throw new Error("not scored in this test");
            },
          }),
    });
    const conditions = () =>
      (
        runs.runs.get("ns/demo")!.status as {
          conditions: { type: string; status: string; reason: string; message: string }[];
        }
      ).conditions;
    return { s3, reconciler, evaluated, conditions, reconcile: () => reconciler.reconcile("ns/demo") };
  }

  for (const flag of [false, undefined]) {
    test(`a run asking for runner.mode InProcess is Stalled, naming the field (flag ${flag}, with an evaluator image)`, async () => {
      const w = world(flag);
      await w.reconcile();
      const stalled = w.conditions().find((c) => c.type === "Stalled")!;
      assert.equal(stalled.status, "True");
      assert.equal(stalled.reason, "InProcessEvaluationDisabled");
      assert.match(stalled.message, /^spec\.evaluation\.runner\.mode: InProcess evaluation is not enabled/);
      assert.deepEqual(w.evaluated, [], "nothing was scored in the operator");
    });
  }

  test("with --in-process-evaluation the same run is scored in the operator", async () => {
    const w = world(true);
    await w.reconcile();
    assert.deepEqual(w.evaluated, [0]);
  });

  test("lost leadership terminates an evaluation in flight, and nothing is written", async () => {
    const w = world(true, true);
    let reading!: () => void;
    const started = new Promise<void>((r) => (reading = r));
    const get = w.s3.objects.get.bind(w.s3.objects);
    w.s3.objects.get = async (uri, limit) => {
      if (uri === MODEL_JSON) {
        reading();
        await new Promise(() => {}); // never answers: only cancellation ends this evaluation
      }
      return get(uri, limit);
    };
    const outcome = w.reconcile();
    await started;
    w.reconciler.abortInFlight();
    assert.equal((await outcome).kind, "retry");
    assert.equal(w.s3.objects.objects.has("s3://runs/demo/rounds/0000/eval.json"), false);
  });
});
