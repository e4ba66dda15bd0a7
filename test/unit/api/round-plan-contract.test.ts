// Every spec field the plan carries must pass the trainer's strict RoundPlan schema: a spec field
// copied into the plan as is (warmStartWarmupSteps once was) makes every round exit 2.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { REPO_ROOT } from "../../../operator/api/gen-artifacts.ts";
import { roundPlan, type RoundPlan } from "../../../operator/api/round-plan.ts";
import { decideRounds } from "../../../operator/controller/rounds.ts";
import type { Slice } from "../../../operator/data/validate.ts";

const RUN = { name: "demo", namespace: "ns", uid: "uid-1", generation: 1 };
const NOW = new Date("2026-05-01T00:00:00Z");
const slice: Slice = {
  id: "2016",
  uri: "s3://tic-data/laion/slices/2016/",
  createdAt: "2026-01-01T00:00:00Z",
  numSamples: 100,
  shards: [{ key: "shard-0.tar", uri: "s3://tic-data/laion/slices/2016/shard-0.tar", samples: 100, bytes: 10 }],
  fingerprint: "2016",
};

function firstPlan(spec: Record<string, any>): RoundPlan {
  const d = decideRounds({
    run: RUN,
    spec: continualClipRunSpec.parse(spec),
    slices: [slice],
    rounds: [],
    previous: undefined,
    now: NOW,
  });
  const write = d.actions.find((a) => a.kind === "WritePlan") as { plan: RoundPlan } | undefined;
  assert.ok(write, `no plan: ${JSON.stringify(d.waiting)}`);
  return write.plan;
}

for (const file of ["complete.yaml", "production.yaml", "minimal.yaml", "local-demo.yaml"]) {
  test(`the first plan of examples/${file} passes the trainer's RoundPlan schema`, () => {
    const spec = YAML.parse(readFileSync(path.join(REPO_ROOT, "examples", file), "utf8")).spec;
    const r = roundPlan.safeParse(firstPlan(spec));
    assert.ok(r.success, r.success ? "" : JSON.stringify(r.error.issues));
  });
}

test("warmupSteps applies to a round trained from scratch, warmStartWarmupSteps to a warm-started one", () => {
  const spec = YAML.parse(readFileSync(path.join(REPO_ROOT, "examples/complete.yaml"), "utf8")).spec;
  spec.strategy.optimizer = { ...spec.strategy.optimizer, warmupSteps: 1000, warmStartWarmupSteps: 100 };
  assert.equal(firstPlan(spec).optimizer.warmupSteps, 100, "round 0 warm-starts from model.initialCheckpoint");
  delete spec.model.initialCheckpoint;
  assert.equal(
    firstPlan(spec).optimizer.warmupSteps,
    1000,
    "round 0 without an initial checkpoint trains from scratch",
  );
});
