import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { main, EXIT_BAD_INPUT } from "../../../operator/evaluation/cli.ts";
import { readEvalResult } from "../../../operator/evaluation/evaluate.ts";
import { evalRequestFor } from "../../../operator/evaluation/request.ts";
import { MemoryObjectStore } from "../../../operator/s3/object-store.ts";

const quiet = async <T>(fn: () => Promise<T>): Promise<T> => {
  const err = console.error;
  console.error = () => {};
  try {
    return await fn();
  } finally {
    console.error = err;
  }
};

const spec = continualClipRunSpec.parse({
  source: { s3: { bucket: "data", prefix: "slices/" } },
  model: { architecture: "ViT-B-16" },
  strategy: { samplesPerRound: 1000 },
  trainer: { image: "t:1" },
  artifacts: { s3: { bucket: "runs", prefix: "" } },
});
const run = { namespace: "ml", name: "demo", uid: "uid-1" };
const request = (round: number) => evalRequestFor({ spec, run, round, roundSlices: ["2020"], slices: [] });
const at = (round: number) => `s3://runs/rounds/${String(round).padStart(4, "0")}/eval-request.json`;
const JOB_ENV = { TICCLIP_RUN: "ml/demo", TICCLIP_ROUND: "4" };

describe("evaluate CLI", () => {
  const cases: [string, string[]][] = [
    ["an unknown command", ["score"]],
    ["no request", ["evaluate"]],
    ["an unknown option", ["evaluate", "--request", at(4), "--bogus"]],
    ["a request that is not an s3:// URI", ["evaluate", "--request", "/tmp/eval-request.json"]],
    ["a request that does not exist", ["evaluate", "--request", at(4)]],
    ["bad --threads", ["evaluate", "--request", at(4), "--threads", "0"]],
  ];
  for (const [name, argv] of cases) {
    test(`exits 2 on ${name}`, async () => {
      assert.equal(await quiet(() => main(argv, new MemoryObjectStore(), JOB_ENV)), EXIT_BAD_INPUT);
    });
  }

  test("a request that is not an eval request, or not this round's, is refused and nothing is written", async () => {
    const store = new MemoryObjectStore();
    await store.put(at(4), JSON.stringify({ ...request(4), slices: "2016,2017" }));
    assert.equal(await quiet(() => main(["evaluate", "--request", at(4)], store, JOB_ENV)), EXIT_BAD_INPUT);
    // Round 3's request copied into round 4's folder (its eval.json would land in round 3's folder).
    await store.put(at(4), JSON.stringify(request(3)));
    assert.equal(await quiet(() => main(["evaluate", "--request", at(4)], store, JOB_ENV)), EXIT_BAD_INPUT);
    // Round 4's own request, run by another run's Job.
    await store.put(at(4), JSON.stringify(request(4)));
    const other = { ...JOB_ENV, TICCLIP_RUN: "ml/other" };
    assert.equal(await quiet(() => main(["evaluate", "--request", at(4)], store, other)), EXIT_BAD_INPUT);
    assert.deepEqual([...store.objects.keys()], [at(4)], "no eval.json anywhere");
  });

  test("a round without model.json exits 2 and records the reason in eval.json", async () => {
    const store = new MemoryObjectStore();
    await store.put(at(4), JSON.stringify(request(4)));
    const code = await quiet(() => main(["evaluate", "--request", at(4)], store, JOB_ENV));
    assert.equal(code, EXIT_BAD_INPUT);
    const ev = await readEvalResult(store, "s3://runs/rounds/0004/");
    assert.ok(ev && ev.status === "Failed");
    assert.equal(ev.reason, "ModelMissing");
    assert.equal(ev.message, "s3://runs/rounds/0004/model.json not found");
    assert.equal(ev.round, 4);
  });
});
