// spec.strategy.merge and the optimizer knobs (schedule, annealFraction, optimizerState): the
// planner's pure parts and admission (the first plan of a run: api/round-plan-contract.test.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { REPO_ROOT } from "../../../operator/api/gen-artifacts.ts";
import { roundMerge, roundSchedule } from "../../../operator/data/planner.ts";

const complete = () => YAML.parse(readFileSync(path.join(REPO_ROOT, "examples/complete.yaml"), "utf8")).spec;

test("roundMerge: the spec's merge on warm-started rounds only, nothing for mode None", () => {
  assert.deepEqual(roundMerge({ mode: "EMA", coefficient: 0.3 }, true), { merge: { mode: "EMA", coefficient: 0.3 } });
  assert.deepEqual(roundMerge({ mode: "EMA", coefficient: 0.3 }, false), {});
  assert.deepEqual(roundMerge({ mode: "None", coefficient: 0.5 }, true), {});
});

test("roundSchedule writes only what differs from the trainer's defaults; rounds from scratch keep the cosine cycle", () => {
  assert.deepEqual(roundSchedule({ schedule: "Cosine", annealFraction: 0.2, optimizerState: "Reset" }, true), {});
  const knobs = { schedule: "ConstantThenAnneal", annealFraction: 0.3, optimizerState: "Carry" } as const;
  assert.deepEqual(roundSchedule(knobs, true), { schedule: "ConstantThenAnneal", annealFraction: 0.3, state: "Carry" });
  assert.deepEqual(roundSchedule(knobs, false), { state: "Carry" });
});

test("admission: merge on a strategy trained from scratch is refused, with the field", () => {
  const spec = complete();
  Object.assign(spec.strategy, { replay: "Oracle", bufferSamples: 0, warmStartFrom: "PreviousRound" });
  const r = continualClipRunSpec.safeParse(spec);
  assert.ok(!r.success);
  assert.match(JSON.stringify(r.error.issues), /merge applies only to warm-started replay/);
  spec.strategy.merge.mode = "None";
  assert.ok(continualClipRunSpec.safeParse(spec).success);
  for (const coefficient of [0, 1.5]) {
    const bad = complete();
    bad.strategy.merge.coefficient = coefficient;
    assert.ok(!continualClipRunSpec.safeParse(bad).success, `coefficient ${coefficient}`);
  }
});

test("the defaults: no merge, fresh AdamW (the paper's), constant lr then anneal on warm-started rounds (the ablation's)", () => {
  const spec = continualClipRunSpec.parse(
    YAML.parse(readFileSync(path.join(REPO_ROOT, "examples/minimal.yaml"), "utf8")).spec,
  );
  assert.deepEqual(spec.strategy.merge, { mode: "None", coefficient: 0.5 });
  assert.equal(spec.strategy.optimizer.schedule, "ConstantThenAnneal");
  assert.equal(spec.strategy.optimizer.annealFraction, 0.2);
  assert.equal(spec.strategy.optimizer.optimizerState, "Reset");
});
