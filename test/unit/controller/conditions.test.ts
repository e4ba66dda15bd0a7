import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  CONDITION_TYPES,
  CONDITIONS,
  healthConditions,
  invalidSpecConditions,
  setCondition,
  type ConditionSpec,
} from "../../../operator/controller/conditions.ts";

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

/** docs/operations.md's condition table, as the catalogue says it. */
function catalogueTable(): string {
  const rows = CONDITION_TYPES.map((type) => {
    const c: ConditionSpec = CONDITIONS[type];
    const reasons = Object.entries(c.reasons).map(([r, when]) => `\`${r}\` (${when})`);
    if (c.carries) reasons.push(`or ${c.carries}`);
    return `| \`${type}\` | ${c.healthy} | ${c.meaning} | ${reasons.join(", ")} |`;
  });
  return ["| type | healthy | meaning | reasons |", "|---|---|---|---|", ...rows].join("\n");
}

test("docs/operations.md lists each condition type with the catalogue's polarity, meaning and reasons", () => {
  const doc = readFileSync(new URL("../../../docs/operations.md", import.meta.url), "utf8");
  const m = /<!-- condition-catalogue[^>]*-->\n([\s\S]*?)\n<!-- \/condition-catalogue -->/.exec(doc);
  assert.ok(m, "docs/operations.md has the condition-catalogue markers");
  assert.equal(m[1], catalogueTable(), `replace the table in docs/operations.md with:\n${catalogueTable()}`);
});

test("a run's health conditions are the catalogue's types with its reasons", () => {
  const blocked = { reason: "S3Network", message: "spec.source.s3: unreachable" };
  for (const c of [
    ...healthConditions({ blocked, active: undefined, suspended: false, watching: "s3://b/p/" }),
    ...healthConditions({
      blocked: undefined,
      active: { index: 0, phase: "Training", message: "" },
      suspended: false,
      watching: "",
    }),
    ...healthConditions({ blocked: undefined, active: undefined, suspended: true, watching: "" }),
    ...invalidSpecConditions("spec.x: bad"),
  ]) {
    const spec: ConditionSpec = CONDITIONS[c.type];
    assert.ok(
      c.reason in spec.reasons || (spec.carries !== undefined && c.reason === blocked.reason),
      `${c.type} ${c.reason}`,
    );
  }
});
