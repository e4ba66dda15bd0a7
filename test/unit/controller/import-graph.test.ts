// The layer order of docs/design.md, checked on the sources: a new upward import or cycle fails here.
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
