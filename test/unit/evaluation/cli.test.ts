import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { main, EXIT_BAD_INPUT } from "../../../operator/evaluation/cli.ts";
import { readEvalResult } from "../../../operator/evaluation/evaluate.ts";
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

describe("evaluate CLI", () => {
  const cases: [string, string[]][] = [
    ["an unknown command", ["score"]],
    ["no round URI", ["evaluate", "--round", "0", "--round-slices", "2016"]],
    ["a negative round", ["evaluate", "--round-uri", "s3://r/rounds/0000/", "--round", "-1", "--round-slices", "2016"]],
    [
      "a bad K",
      ["evaluate", "--round-uri", "s3://r/rounds/0000/", "--round", "0", "--round-slices", "2016", "--k", "0"],
    ],
    ["an unknown option", ["evaluate", "--round-uri", "s3://r/rounds/0000/", "--bogus"]],
    [
      "an unknown execution provider",
      [
        "evaluate",
        "--round-uri",
        "s3://r/rounds/0000/",
        "--round",
        "0",
        "--round-slices",
        "2016",
        "--execution-provider",
        "tpu",
      ],
    ],
    [
      "a baseline without its version",
      [
        "evaluate",
        "--round-uri",
        "s3://r/rounds/0000/",
        "--round",
        "0",
        "--round-slices",
        "2016",
        "--baseline-uri",
        "s3://m/v1/",
      ],
    ],
  ];
  for (const [name, argv] of cases) {
    test(`exits 2 on ${name}`, async () => {
      assert.equal(await quiet(() => main(argv, new MemoryObjectStore())), EXIT_BAD_INPUT);
    });
  }

  test("a round without model.json exits 2 and records the reason in eval.json", async () => {
    const store = new MemoryObjectStore();
    const code = await quiet(() =>
      main(["evaluate", "--round-uri", "s3://r/rounds/0004/", "--round", "4", "--round-slices", "2020"], store),
    );
    assert.equal(code, EXIT_BAD_INPUT);
    const ev = await readEvalResult(store, "s3://r/rounds/0004/");
    assert.ok(ev && ev.status === "Failed");
    assert.equal(ev.reason, "ModelMissing");
    assert.equal(ev.message, "s3://r/rounds/0004/model.json not found");
    assert.equal(ev.round, 4);
  });
});
