// The layer order of docs/design.md, checked on the sources: a new upward import or cycle fails here.
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import assert from "node:assert/strict";
import { cycles, importGraph, upwardImports } from "../../../dev/import-graph.ts";

const graph = importGraph();

test("no module imports from a layer above its own", () => {
  assert.deepEqual(upwardImports(graph), []);
});

test("no import cycles between operator modules", () => {
  assert.deepEqual(cycles(graph), []);
});

test("the graph sees the operator's imports (the check is not vacuous)", () => {
  assert.ok(graph.modules.length > 40);
  assert.ok(graph.edges.some(([from, to]) => from === "controller/decide.ts" && to === "controller/rounds.ts"));
});

test("the operator's own thread does not load onnxruntime (only the evaluation worker and Job do)", () => {
  // about 11 MiB of native libraries the reconcilers never use (docs/scale.md, "Memory").
  const probe = `
    import { createRequire } from "node:module";
    await import(${JSON.stringify(new URL("../../../operator/main.ts", import.meta.url).href)});
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes("onnxruntime"));
    process.stdout.write(JSON.stringify(loaded));`;
  const out = execFileSync(process.execPath, ["--input-type=module", "-e", probe], { encoding: "utf8" });
  assert.deepEqual(JSON.parse(out), []);
});
