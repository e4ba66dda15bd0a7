import { test } from "node:test";
import assert from "node:assert/strict";
import { compareQuantities, parseQuantity } from "../../../operator/api/quantity.ts";

test("quantities compare as the numbers they spell, not as text", () => {
  const cases: [string | number, string | number, -1 | 0 | 1][] = [
    ["1Gi", "1500Mi", -1],
    ["9Gi", "10000Mi", -1],
    ["2Gi", "1500Mi", 1],
    [4, "4500m", -1],
    [5, "4500m", 1],
    ["0.5", "500m", 0],
    ["100m", ".1", 0],
    ["1e3", "1k", 0],
    ["1E3", "999", 1],
    ["1Ki", "1024", 0],
    ["1k", "1Ki", -1],
    ["1.5Gi", "1536Mi", 0],
    ["1n", "0", 1],
    ["+2", "2", 0],
    ["-1", "0", -1],
    ["1Ei", "1E", 1],
  ];
  for (const [a, b, want] of cases) {
    const qa = parseQuantity(a);
    const qb = parseQuantity(b);
    assert.ok(qa && qb, `${a} and ${b} are quantities`);
    assert.equal(compareQuantities(qa, qb), want, `${a} vs ${b}`);
  }
});

test("what is not a quantity is not parsed", () => {
  for (const s of ["", "lots", "1GB", "1.2.3", "Gi", "1e", "--1"]) assert.equal(parseQuantity(s), undefined, s);
});
