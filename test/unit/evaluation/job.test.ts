import { test } from "node:test";
import assert from "node:assert/strict";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { buildEvalJob } from "../../../operator/evaluation/job.ts";

const RUN = { name: "demo", namespace: "ns", uid: "uid-1", generation: 1 };
const spec = (evaluation: Record<string, unknown> = {}) =>
  continualClipRunSpec.parse({
    source: { s3: { bucket: "data", credentialsSecretRef: { name: "s3-creds" } } },
    model: { architecture: "ViT-B-16" },
    strategy: { samplesPerRound: 1000 },
    trainer: { image: "trainer:1", gpusPerNode: 8 },
    artifacts: { s3: { bucket: "runs" } },
    evaluation,
  });
const job = (s = spec()) =>
  buildEvalJob({
    run: RUN,
    spec: s,
    image: "operator:1",
    request: { spec: s, run: RUN, round: 2, roundSlices: ["2018"], slices: ["2016", "2017", "2018"] },
  });

test("an evaluation Job asks for resources even when the spec names none, and mounts no token", () => {
  const pod = job().spec.template.spec;
  assert.deepEqual(pod.containers[0].resources.requests, { cpu: "1", memory: "2Gi" });
  assert.equal(pod.automountServiceAccountToken, false);
});

test("an evaluation Job takes the runner's own requests and GPUs, not the trainer's", () => {
  const s = spec({ runner: { gpus: 1, resources: { requests: { cpu: "4", memory: "16Gi" } } } });
  const c = job(s).spec.template.spec.containers[0];
  assert.deepEqual(c.resources.requests, { cpu: "4", memory: "16Gi" });
  assert.equal(c.resources.limits["nvidia.com/gpu"], 1);
  assert.equal(c.name, "evaluator");
  assert.deepEqual(job(s).spec.podFailurePolicy.rules[0].onExitCodes, {
    containerName: "evaluator",
    operator: "In",
    values: [2],
  });
});

test("an evaluation Job's command line names its request, not the slices: a year of hourly slices fits", () => {
  const s = spec();
  const hourly = Array.from({ length: 24 * 366 }, (_, h) => `2024-${String(h).padStart(6, "0")}`);
  const j = buildEvalJob({
    run: RUN,
    spec: s,
    image: "operator:1",
    request: { spec: s, run: RUN, round: 2, roundSlices: [hourly.at(-1)!], slices: hourly },
  });
  const command: string[] = j.spec.template.spec.containers[0].command;
  assert.deepEqual(command, [
    "node",
    "operator/evaluation/cli.ts",
    "evaluate",
    "--request",
    "s3://runs/rounds/0002/eval-request.json",
  ]);
  // The kernel refuses one argument over 128 KiB (MAX_ARG_STRLEN) and all of them over ARG_MAX.
  assert.ok(command.every((a) => Buffer.byteLength(a) < 4096));
});

test("an evaluation Job limited below the default requests asks for no more than its limits", () => {
  const s = spec({ runner: { resources: { limits: { memory: "1Gi" } } } });
  const resources = job(s).spec.template.spec.containers[0].resources;
  assert.deepEqual(resources.requests, { cpu: "1" }, "memory is requested at its limit by Kubernetes");
  assert.deepEqual(resources.limits, { memory: "1Gi" });
});
