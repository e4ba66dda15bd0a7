// Every spec field the plan carries must pass the trainer's strict RoundPlan schema: a spec field
// copied into the plan as is (warmStartWarmupSteps once was) makes every round exit 2.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { REPO_ROOT } from "../../../operator/api/gen-artifacts.ts";
import { roundPlan, type RoundPlan } from "../../../operator/api/round-plan.ts";
import { decideRounds } from "../../../operator/controller/rounds.ts";
import { fingerprintManifest, type Slice, validateSlice } from "../../../operator/data/validate.ts";

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

test("trainer.maxSkippedFraction and a slice's sample reading (its manifest) reach the plan", () => {
  const spec = YAML.parse(readFileSync(path.join(REPO_ROOT, "examples/minimal.yaml"), "utf8")).spec;
  assert.equal(firstPlan(spec).data.maxSkippedFraction, 0.01, "the default");
  spec.trainer.maxSkippedFraction = 0.05;
  const plain = firstPlan(spec);
  assert.equal(plain.data.maxSkippedFraction, 0.05);
  assert.ok(!("heldOutFraction" in plain.data.sources[0]!) && !("jsonCaptionField" in plain.data.sources[0]!));
  const d = decideRounds({
    run: RUN,
    spec: continualClipRunSpec.parse(spec),
    slices: [{ ...slice, heldOutFraction: 0.002, jsonCaptionField: "text" }],
    rounds: [],
    previous: undefined,
    now: NOW,
  });
  const plan = (d.actions.find((a) => a.kind === "WritePlan") as { plan: RoundPlan }).plan;
  assert.equal(plan.data.sources[0]!.heldOutFraction, 0.002);
  assert.equal(plan.data.sources[0]!.jsonCaptionField, "text");
  assert.ok(roundPlan.safeParse(plan).success);
});

test("a manifest made in place from existing shards validates, its sample reading kept, old fingerprints unchanged", () => {
  const base = {
    sliceId: "2021",
    createdAt: "2026-01-01T00:00:00Z",
    numSamples: 90,
    shards: [{ key: "00000.tar", samples: 90, bytes: 4096 }],
    eval: { retrieval: "eval/" },
  };
  const folder = (m: object) => ({
    bucket: "data",
    folder: "laion/2021/",
    id: "2021",
    objects: [
      { key: "laion/2021/00000.tar", size: 4096 },
      { key: "laion/2021/00000_stats.json", size: 300 },
      { key: "laion/2021/00000.parquet", size: 9000 },
      { key: "laion/2021/eval/pack.json", size: 10 },
    ],
    manifestText: JSON.stringify(m),
  });
  const plain = validateSlice(folder(base) as never);
  const inPlace = validateSlice(folder({ ...base, heldOutFraction: 0.1, jsonCaptionField: "text" }) as never);
  assert.ok(plain.ok && inPlace.ok);
  // What the fingerprint was before the manifest had these fields: existing slices do not change.
  const before = { numSamples: 90, shards: [["00000.tar", 90, 4096]], eval: base.eval };
  assert.equal(plain.slice.fingerprint, createHash("sha256").update(JSON.stringify(before)).digest("hex"));
  assert.equal(plain.slice.fingerprint, fingerprintManifest(base as never));
  assert.equal(inPlace.slice.heldOutFraction, 0.1);
  assert.equal(inPlace.slice.jsonCaptionField, "text");
  assert.notEqual(inPlace.slice.fingerprint, plain.slice.fingerprint);
  assert.equal(plain.slice.heldOutFraction, undefined);
  for (const bad of [{ heldOutFraction: 1 }, { heldOutFraction: 0 }, { jsonCaptionField: "" }]) {
    const r = validateSlice(folder({ ...base, ...bad }) as never);
    assert.ok(!r.ok && r.invalid.reason === "ManifestInvalid", JSON.stringify(bad));
  }
});

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

test("a warm-started first round carries the merge and the knobs into the plan; from scratch it has no merge", () => {
  const spec = YAML.parse(readFileSync(path.join(REPO_ROOT, "examples/complete.yaml"), "utf8")).spec; // CumulativeEqual from model.initialCheckpoint, merge Interpolate 0.5
  const warm = firstPlan(spec);
  assert.ok(roundPlan.safeParse(warm).success);
  assert.deepEqual(warm.merge, { mode: "Interpolate", coefficient: 0.5 });
  assert.equal(warm.optimizer.schedule, "ConstantThenAnneal");
  assert.equal(warm.optimizer.annealFraction, 0.2);
  delete spec.model.initialCheckpoint;
  const scratch = firstPlan(spec);
  assert.equal(scratch.merge, undefined, "nothing to merge with");
  assert.equal(scratch.optimizer.schedule, undefined, "from scratch: the trainer's one cosine cycle");
  spec.strategy.merge = { mode: "None" };
  spec.strategy.optimizer = { ...spec.strategy.optimizer, schedule: "Cosine", optimizerState: "Reset" };
  const plain = firstPlan(spec);
  assert.ok(!("merge" in plain) && !("schedule" in plain.optimizer) && !("state" in plain.optimizer));
});
