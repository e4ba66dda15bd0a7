// The generated CRD against the real kube-apiserver: examples are accepted (and defaulted),
// bad manifests are rejected with a message naming the field, and `kubectl explain` is useful.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { REPO_ROOT, applyCrds, createNamespace, kubectl, kubectlOk } from "../support/cluster.ts";

type Manifest = { metadata: { name: string; namespace?: string }; spec: Record<string, any> };
const examplesDir = path.join(REPO_ROOT, "examples");
const exampleFiles = readdirSync(examplesDir).filter((f) => f.endsWith(".yaml"));
const minimal = YAML.parse(readFileSync(path.join(examplesDir, "minimal.yaml"), "utf8")) as Manifest;

let ns = "";
before(() => {
  applyCrds();
  ns = createNamespace("crd");
});

test("every example is accepted and defaulted by the API server", () => {
  assert.ok(exampleFiles.length >= 2, "examples/ holds at least two manifests");
  for (const file of exampleFiles) {
    const doc = YAML.parse(readFileSync(path.join(examplesDir, file), "utf8")) as Manifest;
    doc.metadata.namespace = ns;
    kubectlOk(["create", "-f", "-"], JSON.stringify(doc));
    const stored = JSON.parse(kubectlOk(["get", "ccr", doc.metadata.name, "-n", ns, "-o", "json"])) as Manifest;
    assert.equal(typeof stored.spec.strategy.replay, "string", `${file}: replay defaulted`);
    assert.equal(typeof stored.spec.strategy.optimizer.lr, "number", `${file}: optimizer defaulted`);
    assert.equal(typeof stored.spec.trainer.backoffLimit, "number", `${file}: backoffLimit defaulted`);
  }
  const stored = JSON.parse(kubectlOk(["get", "ccr", "tiny-demo", "-n", ns, "-o", "json"])) as Manifest;
  assert.equal(stored.spec.strategy.replay, "CumulativeAll");
  assert.equal(stored.spec.source.pollInterval, "5m");
  assert.equal(stored.spec.historyLimit, 50);
});

test("several CPU nodes (nodes 2, gpusPerNode 0: gloo rendezvous) are accepted", () => {
  const doc = structuredClone(minimal);
  doc.metadata = { name: "cpu-duo", namespace: ns };
  Object.assign(doc.spec.trainer, { nodes: 2, gpusPerNode: 0 });
  kubectlOk(["create", "-f", "-"], JSON.stringify(doc));
  const stored = JSON.parse(kubectlOk(["get", "ccr", "cpu-duo", "-n", ns, "-o", "json"])) as Manifest;
  assert.deepEqual([stored.spec.trainer.nodes, stored.spec.trainer.gpusPerNode], [2, 0]);
});

type Case = { name: string; mutate: (spec: any) => void; field: string; says?: RegExp };
const cases: Case[] = [
  {
    name: "budget of the wrong type",
    mutate: (s) => (s.strategy.samplesPerRound = "lots"),
    field: "spec.strategy.samplesPerRound",
  },
  { name: "negative budget", mutate: (s) => (s.strategy.samplesPerRound = -5), field: "spec.strategy.samplesPerRound" },
  {
    name: "unknown replay strategy",
    mutate: (s) => (s.strategy.replay = "Forever"),
    field: "spec.strategy.replay",
    says: /Unsupported value/,
  },
  {
    name: "bad cpu quantity",
    mutate: (s) => (s.trainer.resources = { requests: { cpu: "lots" } }),
    field: "spec.trainer.resources.requests.cpu",
  },
  {
    name: "missing bucket",
    mutate: (s) => delete s.source.s3.bucket,
    field: "spec.source.s3.bucket",
    says: /Required/,
  },
  { name: "missing trainer", mutate: (s) => delete s.trainer, field: "spec.trainer", says: /Required/ },
  {
    name: "bucket name with capitals",
    mutate: (s) => (s.source.s3.bucket = "Tic_Data"),
    field: "spec.source.s3.bucket",
  },
  {
    name: "prefix starting with a slash",
    mutate: (s) => (s.source.s3.prefix = "/slices/"),
    field: "spec.source.s3.prefix",
  },
  {
    name: "poll interval in words",
    mutate: (s) => (s.source.pollInterval = "5 minutes"),
    field: "spec.source.pollInterval",
  },
  {
    name: "endpoint without scheme",
    mutate: (s) => (s.source.s3.endpoint = "minio:9000"),
    field: "spec.source.s3.endpoint",
  },
  {
    name: "checkpoint that is not s3://",
    mutate: (s) => (s.model.initialCheckpoint = "http://models/x.pt"),
    field: "spec.model.initialCheckpoint",
  },
  {
    name: "learning rate of zero",
    mutate: (s) => (s.strategy.optimizer = { lr: 0 }),
    field: "spec.strategy.optimizer.lr",
  },
  {
    name: "unknown precision",
    mutate: (s) => (s.strategy.optimizer = { precision: "fp8" }),
    field: "spec.strategy.optimizer.precision",
  },
  { name: "history limit of zero", mutate: (s) => (s.historyLimit = 0), field: "spec.historyLimit" },
  {
    name: "queue name with spaces",
    mutate: (s) => (s.trainer.queueName = "Gpu Queue"),
    field: "spec.trainer.queueName",
  },
  {
    name: "CEL: bufferSamples with Sequential replay",
    mutate: (s) => Object.assign(s.strategy, { replay: "Sequential", bufferSamples: 1000 }),
    field: "spec.strategy.bufferSamples",
    says: /applies only to replay CumulativeExp or CumulativeEqual/,
  },
  {
    name: "CEL: Oracle warm-starting from the promoted model",
    mutate: (s) => Object.assign(s.strategy, { replay: "Oracle", warmStartFrom: "LastPromoted" }),
    field: "spec.strategy.warmStartFrom",
    says: /start from scratch/,
  },
  {
    name: "CEL: gate with neither value nor maxRegression",
    mutate: (s) => (s.evaluation = { gates: [{ metric: "retrieval.id.meanRecallAt1" }] }),
    field: "spec.evaluation.gates[0]",
    says: /needs value \(with op\) or maxRegression/,
  },
  {
    name: "CEL: gate with op but no value",
    mutate: (s) => (s.evaluation = { gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", maxRegression: 0.1 }] }),
    field: "spec.evaluation.gates[0].op",
    says: /op and value go together/,
  },
  {
    name: "CEL: zero-shot gate naming no zero-shot pack",
    mutate: (s) => (s.evaluation = { gates: [{ metric: "zeroShot.imagenet-val.top1", maxRegression: 0.01 }] }),
    field: "spec.evaluation.gates",
    says: /must name an entry of evaluation.zeroShot/,
  },
  {
    name: "unknown gate metric",
    mutate: (s) => (s.evaluation = { gates: [{ metric: "accuracy", op: ">=", value: 1 }] }),
    field: "spec.evaluation.gates[0].metric",
  },
];

test("at least 15 invalid manifests are rejected by the API server, naming the field", () => {
  assert.ok(cases.length >= 15);
  const failures: string[] = [];
  for (const c of cases) {
    const doc = structuredClone(minimal);
    doc.metadata = { name: "bad", namespace: ns };
    c.mutate(doc.spec);
    const res = kubectl(["create", "--dry-run=server", "-f", "-"], JSON.stringify(doc));
    if (res.code === 0) failures.push(`${c.name}: accepted`);
    else if (!res.stderr.includes(c.field))
      failures.push(`${c.name}: error does not name ${c.field}: ${res.stderr.trim()}`);
    else if (c.says && !c.says.test(res.stderr))
      failures.push(`${c.name}: error lacks ${c.says}: ${res.stderr.trim()}`);
  }
  assert.deepEqual(failures, []);
});

test("kubectl explain describes the fields", () => {
  const explain = (field: string) => kubectlOk(["explain", `continualclipruns.spec.${field}`]);
  assert.match(explain("strategy.samplesPerRound"), /Compute budget C/);
  assert.match(explain("strategy.optimizer.batchSize"), /Global batch size/);
  assert.match(explain("strategy.optimizer.warmStartWarmupSteps"), /warm-started rounds/);
  assert.match(explain("strategy.maxAttemptsPerSlice"), /marked failed/);
  assert.match(explain("trainer.terminationGracePeriodSeconds"), /ViT-B\/16/);
});

test("printer columns: progress, compute saving and promoted version; -o wide adds ETA and the newest round's verdict", () => {
  const header = kubectlOk(["get", "ccr", "-n", ns]).split("\n")[0]!;
  assert.match(header, /NAME\s+PHASE\s+READY\s+LATEST SLICE\s+ROUND\s+PROGRESS\s+PROMOTED\s+SAVING\s+AGE/);
  const rounds = [
    {
      index: 0,
      slices: ["2016"],
      replay: "CumulativeExp",
      phase: "Promoted",
      message: "all 3 gates passed",
      promotedVersion: 1,
    },
    {
      index: 1,
      slices: ["2017"],
      replay: "CumulativeExp",
      phase: "Rejected",
      message: "failed gates: retrieval.id.meanRecallAt1 (0.2812 not >= 0.3)",
    },
  ];
  const status = {
    phase: "Idle",
    rounds,
    promoted: { version: 1, round: 0, uri: "s3://models/clip/v1/", promotedAt: "2026-01-01T00:00:00Z" },
    compute: { samplesSeen: 368000000, gpuSeconds: 1000, oracleEquivalentSamples: 552000000, savingVsOracle: 1.5 },
  };
  kubectlOk([
    "patch",
    "ccr",
    "datacomp-b16",
    "-n",
    ns,
    "--subresource=status",
    "--type=merge",
    "-p",
    JSON.stringify({ status }),
  ]);
  const [head, row] = kubectlOk(["get", "ccr", "datacomp-b16", "-n", ns]).split("\n");
  const cell = (h: string, r: string, name: string) => r.slice(h.indexOf(name)).split(/\s{2,}/)[0];
  assert.equal(cell(head!, row!, "PROMOTED"), "1");
  assert.equal(cell(head!, row!, "SAVING"), "1.5");
  const [wideHead, wideRow] = kubectlOk(["get", "ccr", "datacomp-b16", "-n", ns, "-o", "wide"]).split("\n");
  assert.match(wideHead!, /REPLAY\s+ETA\s+LAST ROUND\s+GATES\s+AGE/);
  assert.equal(cell(wideHead!, wideRow!, "LAST ROUND"), "Rejected");
  assert.equal(cell(wideHead!, wideRow!, "GATES"), "failed gates: retrieval.id.meanRecallAt1 (0.2812 not >= 0.3)");
});
