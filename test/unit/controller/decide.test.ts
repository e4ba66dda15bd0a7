import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { decide, type Observed } from "../../../operator/controller/decide.ts";
import type { Condition } from "../../../operator/api/continual-clip-run.ts";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { REPO_ROOT } from "../../../operator/api/gen-artifacts.ts";

const NOW = new Date("2026-03-01T12:00:00Z");
const example = YAML.parse(readFileSync(path.join(REPO_ROOT, "examples/minimal.yaml"), "utf8"));
// What the API server stores: the spec with its defaults filled in.
const spec = continualClipRunSpec.parse(example.spec);
const NOTHING: Observed = { rounds: [] };
const decideStatus = (r: ReturnType<typeof run>, now: Date) => decide(r, NOTHING, now);
const run = (overrides: Record<string, unknown> = {}, status?: unknown, generation = 1) => ({
  metadata: { name: "r", namespace: "ns", uid: "u", generation },
  spec: { ...spec, ...overrides },
  status,
});

test("a valid run becomes Ready, waiting for data, with one event", () => {
  const d = decideStatus(run(), NOW);
  assert.equal(d.outcome, "done");
  assert.equal(d.status?.phase, "Waiting");
  assert.equal(d.status?.observedGeneration, 1);
  const ready = d.status?.conditions?.find((c: Condition) => c.type === "Ready");
  assert.deepEqual([ready?.status, ready?.reason, ready?.lastTransitionTime], ["True", "WaitingForData", "2026-03-01T12:00:00Z"]);
  assert.deepEqual(d.events.map((e: { type: string; reason: string }) => e.reason), ["WaitingForData"]);
});

test("deciding again on its own output changes nothing and emits nothing", () => {
  const first = decideStatus(run(), NOW);
  const second = decideStatus(run({}, first.status), new Date("2026-03-02T00:00:00Z"));
  assert.equal(second.status, undefined);
  assert.deepEqual(second.events, []);
});

test("suspend is healthy and says so", () => {
  const d = decideStatus(run({ suspend: true }), NOW);
  assert.equal(d.status?.phase, "Suspended");
  assert.equal(d.status?.conditions?.find((c: Condition) => c.type === "Ready")?.reason, "Suspended");
});

test("an invalid spec is Stalled with a message naming the field, and a Warning", () => {
  const d = decideStatus(run({ strategy: { ...spec.strategy, samplesPerRound: -1 } }), NOW);
  assert.equal(d.outcome, "stalled");
  assert.equal(d.status?.phase, "Invalid");
  const ready = d.status?.conditions?.find((c: Condition) => c.type === "Ready");
  assert.equal(ready?.status, "False");
  assert.match(ready?.message ?? "", /spec\.strategy\.samplesPerRound/);
  assert.equal(d.status?.conditions?.find((c: Condition) => c.type === "Stalled")?.status, "True");
  assert.deepEqual(d.events.map((e: { type: string; reason: string }) => [e.type, e.reason]), [["Warning", "InvalidSpec"]]);
});
