// Slice ids and manifests (operator/api/slice-manifest.ts): order, pattern, problems.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  compareSliceIds,
  SLICE_ID_PATTERN,
  sliceIdProblem,
  sliceManifest,
} from "../../../operator/api/slice-manifest.ts";

describe("slice ids", () => {
  test("order of ids is S3's byte order of their folders", () => {
    const id = fc.stringMatching(SLICE_ID_PATTERN);
    fc.assert(
      fc.property(id, id, (a, b) => {
        const want = Math.sign(Buffer.compare(Buffer.from(`p/${a}/`), Buffer.from(`p/${b}/`)));
        assert.equal(Math.sign(compareSliceIds(a, b)), want);
      }),
    );
  });
  test("time-formatted ids sort in time order", () => {
    const ids = ["2017-03", "2016", "2017-11", "2017-04-01", "2018-01-01T00Z"];
    assert.deepEqual([...ids].sort(compareSliceIds), ["2016", "2017-03", "2017-04-01", "2017-11", "2018-01-01T00Z"]);
  });
  for (const bad of ["", ".", "..", "-x", "a/b", "a b", "é", "x".repeat(129)]) {
    test(`rejects ${JSON.stringify(bad.slice(0, 12))}`, () => assert.notEqual(sliceIdProblem(bad), undefined));
  }
  test("the manifest schema rejects keys escaping the slice folder", () => {
    for (const key of ["../x.tar", "/x.tar", "a//b.tar", "a/./b.tar", "dir/"]) {
      const r = sliceManifest.safeParse({
        sliceId: "2016",
        createdAt: "2024-01-01T00:00:00Z",
        numSamples: 1,
        shards: [{ key, samples: 1, bytes: 1 }],
      });
      assert.equal(r.success, false, key);
    }
  });
});
