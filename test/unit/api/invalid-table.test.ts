// The generated table of invalid manifests, judged by zod (the operator's enforcer). The same table
// goes to the real API server in test/integration/crd-validation-table.test.ts.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { continualClipRun } from "../../../operator/api/continual-clip-run.ts";
import { REPO_ROOT } from "../../../operator/api/gen-artifacts.ts";
import { applyCase, type InvalidCase, renderInvalidTable, TABLE_PATH } from "../../support/invalid-table.ts";

const table = JSON.parse(readFileSync(TABLE_PATH, "utf8")) as { base: string; cases: InvalidCase[] };
const base = YAML.parse(readFileSync(path.join(REPO_ROOT, table.base), "utf8"));
// spec.a[key] and spec.a.key name the same field; zod does not say which keys are map keys.
const canonical = (p: string) => p.replace(/\[([^\]0-9][^\]]*)\]/g, ".$1");
const zodPath = (keys: PropertyKey[]) =>
  canonical(
    keys
      .map((k) => (typeof k === "number" ? `[${k}]` : `.${String(k)}`))
      .join("")
      .slice(1),
  );

describe("invalid-runs table", () => {
  test("is up to date with the schema (run `npm run gen`)", () => {
    assert.equal(readFileSync(TABLE_PATH, "utf8"), renderInvalidTable());
  });

  test("holds at least 60 cases, every kind, each with a field path", () => {
    assert.ok(table.cases.length >= 60, `${table.cases.length} cases`);
    const kinds = new Set(table.cases.map((c) => c.kind));
    for (const k of ["type", "range", "pattern", "enum", "required", "cel"])
      assert.ok(kinds.has(k as InvalidCase["kind"]), k);
    for (const c of table.cases) assert.match(c.field, /^(spec|metadata)/, c.name);
  });

  test("its base manifest and every example are valid", () => {
    const dir = path.join(REPO_ROOT, "examples");
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".yaml"))) {
      const r = continualClipRun.safeParse(YAML.parse(readFileSync(path.join(dir, file), "utf8")));
      assert.ok(r.success, r.success ? "" : `${file}: ${JSON.stringify(r.error.issues)}`);
    }
    assert.ok(continualClipRun.safeParse(base).success);
  });

  test("zod rejects every case with an issue at the expected field", () => {
    const failures: string[] = [];
    for (const c of table.cases) {
      const r = continualClipRun.safeParse(applyCase(base, c));
      if (r.success) {
        failures.push(`${c.name}: accepted`);
        continue;
      }
      const want = canonical(c.field);
      const at = r.error.issues.filter((i) => {
        const p = zodPath(i.path);
        return p === want || p.startsWith(`${want}.`) || p.startsWith(`${want}[`);
      });
      if (at.length === 0)
        failures.push(
          `${c.name}: no issue at ${c.field}: ${r.error.issues.map((i) => `${zodPath(i.path)}: ${i.message}`).join("; ")}`,
        );
      else if (c.says && !at.some((i) => i.message.includes(c.says!)))
        failures.push(`${c.name}: no message with "${c.says}": ${at.map((i) => i.message).join("; ")}`);
    }
    assert.deepEqual(failures, []);
  });
});
