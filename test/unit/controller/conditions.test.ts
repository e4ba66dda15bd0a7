import { test } from "node:test";
import assert from "node:assert/strict";
import { setCondition } from "../../../operator/controller/conditions.ts";

const T0 = new Date("2026-01-01T00:00:00.000Z");
const T1 = new Date("2026-01-01T01:00:00.000Z");

const cases = [
  { name: "new condition gets now", existing: [], update: "True", reason: "A", want: "2026-01-01T01:00:00Z" },
  {
    name: "same status keeps the old time",
    existing: [["True", "A"]],
    update: "True",
    reason: "B",
    want: "2026-01-01T00:00:00Z",
  },
  {
    name: "flipped status takes now",
    existing: [["True", "A"]],
    update: "False",
    reason: "A",
    want: "2026-01-01T01:00:00Z",
  },
] as const;

for (const c of cases) {
  test(c.name, () => {
    const existing = c.existing.map(([status, reason]) => ({
      type: "Ready",
      status,
      reason,
      message: "",
      observedGeneration: 1,
      lastTransitionTime: T0.toISOString().replace(".000", ""),
    }));
    const out = setCondition(existing, { type: "Ready", status: c.update, reason: c.reason, message: "m" }, 7, T1);
    assert.equal(out.length, 1);
    assert.equal(out[0]!.lastTransitionTime, c.want);
    assert.equal(out[0]!.observedGeneration, 7);
    assert.equal(out[0]!.reason, c.reason);
  });
}
