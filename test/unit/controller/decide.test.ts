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
  assert.deepEqual(
    [ready?.status, ready?.reason, ready?.lastTransitionTime],
    ["True", "WaitingForData", "2026-03-01T12:00:00Z"],
  );
  assert.deepEqual(
    d.events.map((e: { type: string; reason: string }) => e.reason),
    ["WaitingForData"],
  );
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
  assert.deepEqual(
    d.events.map((e: { type: string; reason: string }) => [e.type, e.reason]),
    [["Warning", "InvalidSpec"]],
  );
});

// The condition table that kstatus (Flux, kubectl wait) and the Argo CD check in docs/operations.md read:
// Stalled=True -> Failed; otherwise Ready decides (True -> Current, False -> InProgress).
const planOf = (index: number) =>
  ({
    schemaVersion: 1,
    run: { namespace: "ns", name: "r", uid: "u" },
    round: index,
    newSlices: ["2016"],
    replay: "CumulativeAll",
    model: { architecture: "ticclip-tiny", initCheckpoint: null },
    data: {
      sources: [{ sliceId: "2016", shards: [{ uri: "s3://x/y.tar", samples: 100 }], weight: 1, expectedShare: 1 }],
      samples: 100,
    },
    optimizer: { lr: 5e-4, weightDecay: 0.2, warmupSteps: 0, batchSize: 8, precision: "fp32" },
    output: { uri: "s3://tic-runs/tiny-demo/rounds/0000/" },
    checkpointIntervalMinutes: 30,
    seed: index,
    s3: { region: "us-east-1", endpoint: null },
  }) as unknown as NonNullable<Observed["rounds"][number]["plan"]>;
const job = (failed: boolean) => ({
  name: "r-r0000-train",
  active: failed ? 0 : 1,
  succeeded: 0,
  failed: failed ? 3 : 0,
  complete: false,
  ...(failed ? { failure: { reason: "BackoffLimitExceeded", message: "trainer exited 1" } } : {}),
});
const oneSlice = {
  slices: [
    {
      id: "2016",
      uri: "s3://tic-data/slices/2016/",
      createdAt: "2026-01-01T00:00:00Z",
      numSamples: 100,
      fingerprint: "f",
      shards: [{ key: "shard-0.tar", uri: "s3://tic-data/slices/2016/shard-0.tar", samples: 100, bytes: 10 }],
    },
  ],
  newSlices: [],
  invalid: [],
  newInvalid: [],
  pending: [],
  warnings: [],
  errors: [],
  health: { ok: true },
  nextPollMs: 60_000,
} as unknown as NonNullable<Observed["discovery"]>;
const kstatusCases: Array<{ name: string; overrides?: Record<string, unknown>; observed: Observed; want: string[] }> = [
  { name: "waiting for data is Ready, not Stalled", observed: NOTHING, want: ["True", "False", "False"] },
  {
    name: "suspended is Ready, not Stalled",
    overrides: { suspend: true },
    observed: NOTHING,
    want: ["True", "False", "False"],
  },
  {
    name: "a round training for hours is Ready and only Progressing",
    observed: { rounds: [{ index: 0, files: new Set(["plan.json"]), plan: planOf(0), job: job(false) }] },
    want: ["True", "True", "False"],
  },
  {
    name: "a trained round being evaluated is Ready and only Progressing",
    observed: { rounds: [{ index: 0, files: new Set(["plan.json", "_SUCCESS"]), plan: planOf(0), job: job(false) }] },
    want: ["True", "True", "False"],
  },
  {
    name: "S3 unreachable is Stalled, so GitOps waits fail instead of hanging",
    observed: { rounds: [], problem: { reason: "S3Unreachable", message: "connect ECONNREFUSED 127.0.0.1:1" } },
    want: ["False", "False", "True"],
  },
  {
    name: "a failed round waiting for new data is Stalled",
    observed: {
      rounds: [{ index: 0, files: new Set(["plan.json"]), plan: planOf(0), job: job(true) }],
      discovery: oneSlice,
    },
    want: ["False", "False", "True"],
  },
];
for (const c of kstatusCases) {
  test(`kstatus table: ${c.name}`, () => {
    const d = decide(run(c.overrides), c.observed, NOW);
    const get = (t: string) => d.status?.conditions?.find((x: Condition) => x.type === t);
    assert.deepEqual(
      ["Ready", "Progressing", "Stalled"].map((t) => get(t)?.status),
      c.want,
    );
    assert.equal(get("Reconciling"), undefined);
    for (const cond of d.status?.conditions ?? []) assert.equal(cond.observedGeneration, 1);
    if (c.want[2] === "True") assert.equal(get("Stalled")?.reason, get("Ready")?.reason);
  });
}
