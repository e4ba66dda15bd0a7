// The run's Kubernetes structures (affinity, tolerations, nodeSelector, resources) are refused at
// admission "as the API server would validate the pod" (issue 21): this checks that claim against
// the API server's own pod validation. The complete example's trainer Job is accepted; for every
// case of the invalid-run table on one of those fields, the same value put into that Job's pod is
// refused too, unless the case is one of our own bounds (list lengths and string lengths the CRD
// needs to cost its CEL rules), which the pod would accept.
import { before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import YAML from "yaml";
import { continualClipRun } from "../../operator/api/continual-clip-run.ts";
import { buildEvalJob } from "../../operator/evaluation/job.ts";
import { buildTrainJob } from "../../operator/training/job.ts";
import { REPO_ROOT, createNamespace, kubectl } from "../support/cluster.ts";
import { applyCase, type InvalidCase, TABLE_PATH } from "../support/invalid-table.ts";

const table = JSON.parse(readFileSync(TABLE_PATH, "utf8")) as { base: string; cases: InvalidCase[] };
const base = YAML.parse(readFileSync(path.join(REPO_ROOT, table.base), "utf8"));
const run = continualClipRun.parse(base);

let ns = "";
before(() => {
  ns = createNamespace("podcheck");
});

/** The trainer Job of the complete example, with `pod` edits applied (raw values, as a run could hold them). */
function trainerJob(edit: (pod: Record<string, any>) => void): Record<string, any> {
  const job = buildTrainJob({
    run: { name: "complete-b32", namespace: ns, uid: "00000000-0000-0000-0000-000000000001", generation: 1 },
    spec: run.spec,
    round: 0,
    planUri: "s3://tic-runs/complete-b32/rounds/0000/plan.json",
  });
  job.metadata.ownerReferences = undefined;
  edit(job.spec.template.spec);
  return job;
}

/**
 * The API server's verdict on a server-side dry run of `job`, sent as raw JSON (client-node's typed
 * serializer would drop a value of the wrong type before the API server saw it).
 */
function refusal(job: Record<string, any>): string | undefined {
  const res = kubectl(["create", "--dry-run=server", "-o", "name", "-f", "-"], JSON.stringify(job));
  return res.code === 0 ? undefined : res.stderr.trim();
}

// Where each run field goes in the trainer's pod.
const POD_FIELDS: Record<string, (pod: Record<string, any>, value: unknown) => void> = {
  "spec.trainer.affinity": (pod, v) => {
    pod.affinity = v;
  },
  "spec.trainer.tolerations": (pod, v) => {
    pod.tolerations = v;
  },
  "spec.trainer.nodeSelector": (pod, v) => {
    pod.nodeSelector = v;
  },
  "spec.trainer.resources": (pod, v) => {
    pod.containers[0].resources = v;
  },
};

/**
 * Cases of rules that are ours, not the pod's: list and string lengths (bounds the API server needs
 * to cost CEL rules), tolerationSeconds within what a JSON number holds exactly, and GPUs only
 * through gpusPerNode.
 */
const OUR_OWN: ((c: InvalidCase) => boolean)[] = [
  (c) => c.kind === "items" || c.kind === "length",
  (c) => c.kind === "range" && c.field.endsWith(".tolerationSeconds"),
  (c) => c.says === "GPUs come from gpusPerNode",
];

test("the complete example's trainer Job, affinity and all, is a valid Job", async () => {
  assert.equal(refusal(trainerJob(() => {})), undefined);
});

test("every invalid run of the table on a pod field is an invalid pod too (our own length bounds aside)", async () => {
  const failures: string[] = [];
  let checked = 0;
  for (const c of table.cases) {
    const field = Object.keys(POD_FIELDS).find(
      (f) => c.field === f || c.field.startsWith(`${f}.`) || c.field.startsWith(`${f}[`),
    );
    if (!field) continue;
    const doc = applyCase(base, c);
    const value = field.split(".").reduce((o: any, k) => (o == null ? undefined : o[k]), doc);
    // A field removed whole is a valid pod (no affinity): only its contents can be wrong.
    if (value === undefined) continue;
    checked++;
    const verdict = refusal(trainerJob((pod) => POD_FIELDS[field]!(pod, value)));
    const ours = OUR_OWN.some((o) => o(c));
    if (verdict === undefined && !ours) failures.push(`${c.name}: the API server accepts it in a pod`);
  }
  assert.ok(checked > 150, `${checked} cases checked`);
  assert.deepEqual(failures, []);
});

test("an evaluation Job whose runner limits memory below the default request is a valid Job", () => {
  const spec = continualClipRun.parse({
    ...base,
    spec: {
      ...base.spec,
      evaluation: { ...base.spec.evaluation, runner: { resources: { limits: { memory: "1Gi" } } } },
    },
  }).spec;
  const runRef = { name: "complete-b32", namespace: ns, uid: "00000000-0000-0000-0000-000000000001", generation: 1 };
  const job = buildEvalJob({
    run: runRef,
    spec,
    image: "operator:1",
    request: { spec, run: runRef, round: 0, roundSlices: ["2016"], slices: ["2016"] },
  });
  job.metadata.ownerReferences = undefined;
  assert.equal(refusal(job), undefined);
});
