// Issue 21 item 11 on the local cluster: an operator whose administrator left in-process evaluation
// off (the chart's default) refuses a run that asks for it, naming the field, and evaluates nothing.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { getRun, kubectlOk, waitFor } from "../support/cluster.ts";
import {
  createBucket,
  localRunManifest,
  OPERATOR_IMAGE,
  type Proc,
  startLocalRun,
  stopAll,
} from "../support/local-run.ts";
import { roundFiles } from "../support/rounds.ts";
import { putObject, s3Client } from "../support/s3.ts";
import { putSlice } from "./data/slices.ts";

let ns = "";
let operator: Proc;
before(() => {
  ({ ns, operator } = startLocalRun("inprocess", {
    operator: ["--evaluator-image", OPERATOR_IMAGE, "--in-process-evaluation", "false"],
  }));
});
after(() => stopAll(operator));

test("a run asking for in-process evaluation on an operator that does not allow it is Stalled, naming the field", async () => {
  const data = await createBucket("inproc-data");
  const runs = await createBucket("inproc-runs");
  await putSlice(s3Client(), data, "slices/", { id: "2016", shards: [16] });
  // A trained round waiting for its evaluation.
  for (const [key, body] of roundFiles(runs, "asks/", 0, { model: true, run: { namespace: ns, name: "asks" } }))
    await putObject(s3Client(), runs, key, body);
  const m = localRunManifest({
    namespace: ns,
    name: "asks",
    dataBucket: data,
    runsBucket: runs,
    spec: { evaluation: { runner: { mode: "InProcess" } } },
  });
  m.spec.artifacts.s3.prefix = "asks/";
  kubectlOk(["create", "-f", "-"], JSON.stringify(m));
  type Condition = { type: string; status: string; reason: string; message: string };
  const stalled = await waitFor(
    "Stalled",
    () =>
      ((getRun(ns, "asks")?.status?.conditions ?? []) as Condition[]).find(
        (c) => c.type === "Stalled" && c.status === "True",
      ),
    60_000,
    500,
  );
  assert.equal(stalled.reason, "InProcessEvaluationDisabled");
  assert.match(stalled.message, /^spec\.evaluation\.runner\.mode: /);
  const jobs = JSON.parse(kubectlOk(["get", "jobs", "-n", ns, "-o", "json"])).items;
  assert.deepEqual(jobs, [], "no Job either: the run waits for its spec or the operator's configuration");
});
