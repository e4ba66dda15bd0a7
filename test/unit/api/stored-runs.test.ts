// A run stored before a rule existed (the API server does not re-validate unchanged fields) reaches
// the operator, whose zod schema evaluates the same CEL: it is Invalid, with the rule's message and
// the field, and starts nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { decide } from "../../../operator/controller/decide.ts";
import { REPO_ROOT } from "../../../operator/api/gen-artifacts.ts";
import { applyCase, type InvalidCase, TABLE_PATH } from "../../support/invalid-table.ts";

const table = JSON.parse(readFileSync(TABLE_PATH, "utf8")) as { base: string; cases: InvalidCase[] };
const base = YAML.parse(readFileSync(path.join(REPO_ROOT, table.base), "utf8"));
const NOW = new Date("2026-03-01T12:00:00Z");
const specRules = table.cases.filter((c) => c.kind === "cel" && c.field.startsWith("spec."));

test(`each of the ${specRules.length} cross-field rules on spec stalls a stored run in the operator, naming the field`, () => {
  assert.ok(specRules.length >= 30);
  const failures: string[] = [];
  for (const c of specRules) {
    const doc = applyCase(base, c);
    const d = decide(
      { metadata: { name: "r", namespace: "ns", uid: "u", generation: 2 }, spec: doc.spec, status: undefined },
      { rounds: [] },
      NOW,
    );
    const ready = d.status?.conditions?.find((x) => x.type === "Ready");
    // decide names fields as spec.a.b.0.c; the table as spec.a.b[0].c.
    const field = c.field.replace(/\[([0-9]+)\]/g, ".$1");
    if (d.outcome !== "stalled" || d.status?.phase !== "Invalid")
      failures.push(`${c.name}: ${d.outcome} ${d.status?.phase}`);
    else if (!ready?.message.includes(field) || !ready.message.includes(c.says!))
      failures.push(`${c.name}: ${ready?.message}`);
    else if (d.actions.length > 0) failures.push(`${c.name}: acts (${d.actions.length} actions)`);
  }
  assert.deepEqual(failures, []);
});
