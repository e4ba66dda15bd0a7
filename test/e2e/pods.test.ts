// The operator's pods under a real kubelet: the pod spec it writes (read-only root, non-root, no
// token, /dev/shm, the Downward API CPU request), preemption (SIGTERM from the kubelet, the
// intra-round checkpoint, the replacement resuming), and a 2-node round rendezvousing through the
// headless Service and CoreDNS. The operator runs as a process here (test/e2e/operator.test.ts runs
// it from the chart); trainer and evaluator pods run in the images built from our Dockerfiles.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { buildRendezvousService, buildTrainJob } from "../../operator/training/job.ts";
import { applyCrds, createNamespace, kubectl, kubectlOk, waitFor } from "../support/cluster.ts";
import {
  assertNotStuck,
  createRun,
  events,
  nodeName,
  operatorImage,
  podLogs,
  pods,
  runningPod,
} from "../support/e2e.ts";
import { createS3Secret, roundsTrained, startOperator, writeSlices, type Proc } from "../support/local-run.ts";
import { s3Client } from "../support/s3.ts";

let ns = "";
let operator: Proc;

before(() => {
  applyCrds(); // this file also runs alone (dev/e2e.sh test/e2e/pods.test.ts), before any helm install
  ns = createNamespace("e2e-pods");
  createS3Secret(ns);
  operator = startOperator(
    [ns],
    ["--leader-elect", "false", "--evaluator-image", operatorImage(), "--in-process-evaluation", "false"],
  );
});
after(async () => {
  await operator?.stop();
});

async function getJson(bucket: string, key: string): Promise<any> {
  const res = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return JSON.parse(await res.Body!.transformToString());
}

const job = (name: string) => JSON.parse(kubectlOk(["get", "job", name, "-n", ns, "-o", "json"]));

/** Round 0's trainer Job of RUN, once the Job controller has marked it Complete. */
const jobComplete = (run: string, timeoutMs: number) =>
  waitFor(
    `${run}'s round 0 Job complete`,
    () => {
      assertNotStuck(ns, `ticclip.dev/run=${run}`);
      const x = job(`${run}-r0000-train`);
      return x.status?.conditions?.some(
        (c: { type: string; status: string }) => c.type === "Complete" && c.status === "True",
      )
        ? x
        : undefined;
    },
    timeoutMs,
    1000,
  );

const trainingSteps = (pod: string) =>
  waitFor(
    `${pod} in its training steps`,
    () => /step \d+\/\d+/.test(podLogs(ns, pod, "trainer")) || undefined,
    300_000,
    1000,
  );

test("preemption: a deleted trainer pod gets SIGTERM from the kubelet, checkpoints, and its replacement resumes without spending a retry", async () => {
  const { data, runs } = await createRun(ns, "preempt", {
    strategy: { samplesPerRound: 1024 },
    trainer: { terminationGracePeriodSeconds: 60 },
  });
  writeSlices(data, ["2016"]);
  const selector = "ticclip.dev/run=preempt,ticclip.dev/component=trainer";
  const first = await runningPod(ns, selector, 300_000);
  await trainingSteps(first.metadata.name);
  // A plain delete, which sets no DisruptionTarget (an Eviction's is covered by the fast tier's
  // progress.test.ts): the kubelet sends the container SIGTERM, the trainer checkpoints and exits 143,
  // which the Job's podFailurePolicy ignores.
  kubectlOk(["delete", "pod", first.metadata.name, "-n", ns, "--wait=false"]);
  const second = await runningPod(ns, selector, 300_000, new Set([first.metadata.uid]));
  await roundsTrained(ns, "preempt", 1, 600_000).catch((err) => {
    throw new Error(`${String(err)}\n${events(ns)}`);
  });
  const j = await jobComplete("preempt", 60_000);
  assert.equal(j.status.failed ?? 0, 0, "the deleted pod spent no retry");
  assert.equal(j.status.succeeded, 1);
  const summary = await getJson(runs, "preempt/rounds/0000/train_summary.json");
  assert.ok(
    summary.resumes.length >= 1,
    `the replacement resumed from the intra-round checkpoint: ${JSON.stringify(summary)}`,
  );
  assert.equal(summary.samplesSeen, 1024, "exactly the budget across both pods");
  assert.notEqual(second.metadata.uid, first.metadata.uid);
});

test("the pod spec holds under the kubelet: read-only root, non-root, no token, a large /dev/shm, the CPU request read by the trainer", async () => {
  // The trainer pod template of a real round, run with a probe in place of the trainer's command.
  const { data } = await createRun(ns, "spec", {
    trainer: { resources: { requests: { cpu: "1", memory: "512Mi" } } },
  });
  writeSlices(data, ["2016"]);
  const template = await waitFor(
    "the round's training Job",
    () => {
      const r = kubectl(["get", "job", "spec-r0000-train", "-n", ns, "-o", "json"]);
      return r.code === 0 ? JSON.parse(r.stdout).spec.template : undefined;
    },
    120_000,
    500,
  );
  const probe = [
    "import json, os",
    "from ticclip_trainer.settings import pod_cpus",
    "r = {'uid': os.getuid(), 'gid': os.getgid()}",
    "try:",
    "    open('/probe', 'w'); r['rootWritable'] = True",
    "except OSError as e:",
    "    r['rootWritable'] = False; r['rootError'] = e.strerror",
    "open('/tmp/probe', 'w').write('ok'); r['tmpWritable'] = True",
    "r['token'] = os.path.exists('/var/run/secrets/kubernetes.io/serviceaccount')",
    "st = os.statvfs('/dev/shm'); r['shmBytes'] = st.f_frsize * st.f_blocks",
    "r['cpuRequest'] = os.environ.get('TICCLIP_CPU_REQUEST'); r['podCpus'] = pod_cpus()",
    "print('PROBE ' + json.dumps(r))",
  ].join("\n");
  const spec = structuredClone(template.spec);
  spec.containers[0].command = ["python", "-c", probe];
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "spec-probe", namespace: ns, labels: { "e2e-probe": "spec" } },
    spec,
  };
  kubectlOk(["create", "-f", "-"], JSON.stringify(pod));
  const done = await waitFor(
    "the probe pod finished",
    () => {
      assertNotStuck(ns, "e2e-probe=spec");
      const p = pods(ns, "e2e-probe=spec")[0];
      return p && ["Succeeded", "Failed"].includes(p.status.phase) ? p : undefined;
    },
    180_000,
    500,
  );
  const logs = podLogs(ns, "spec-probe");
  assert.equal(done.status.phase, "Succeeded", logs);
  assert.equal(done.spec.nodeName, nodeName());
  const r = JSON.parse(/^PROBE (.*)$/m.exec(logs)![1]!);
  assert.equal(r.uid, 1000);
  assert.equal(r.gid, 1000);
  assert.equal(r.rootWritable, false, "read-only root filesystem");
  assert.equal(r.rootError, "Read-only file system");
  assert.equal(r.tmpWritable, true);
  assert.equal(r.token, false, "no service-account token mounted");
  // A container's own /dev/shm is 64 MiB; the memory-backed emptyDir is sized by the node's memory.
  assert.ok(r.shmBytes > 1024 ** 3, `/dev/shm of ${r.shmBytes} bytes`);
  assert.equal(r.cpuRequest, "1", "the Downward API's requests.cpu");
  assert.equal(r.podCpus, 1, "the trainer plans for its request");
});

// A 2-node Job built by the operator's own builders (operator/training/job.ts) from a real run's spec
// with nodes: 2, and given a copy of that run's round plan, changed by PLAN and writing elsewhere:
// the way to give both pods a plan the operator would never write. Not owned by a run (no
// ownerReference, a run name no run has), so the operator leaves them alone.
async function twoNodeJob(name: string, plan: (p: Record<string, any>) => void) {
  const { data, runs } = await createRun(ns, `${name}-src`, {});
  writeSlices(data, ["2016"]);
  const src = `${name}-src/rounds/0000/plan.json`;
  const original = await waitFor("the source run's round plan", () => getJson(runs, src), 180_000, 1000);
  const run = JSON.parse(kubectlOk(["get", "continualclipruns.ticclip.dev", `${name}-src`, "-n", ns, "-o", "json"]));
  const copy = { ...structuredClone(original), output: { uri: `s3://${runs}/${name}/rounds/0000/` } };
  plan(copy);
  const key = `${name}/plan.json`;
  await s3Client().send(new PutObjectCommand({ Bucket: runs, Key: key, Body: JSON.stringify(copy) }));
  const input = {
    run: { name, namespace: ns, uid: "00000000-0000-0000-0000-000000000000", generation: 1 },
    spec: { ...run.spec, trainer: { ...run.spec.trainer, nodes: 2 } },
    round: 0,
  };
  const service = buildRendezvousService(input)!;
  const trainJob = buildTrainJob({ ...input, planUri: `s3://${runs}/${key}` });
  for (const o of [service, trainJob]) {
    delete o.metadata.ownerReferences;
    kubectlOk(["create", "-f", "-"], JSON.stringify(o));
  }
  const finished = await waitFor(
    `${trainJob.metadata.name} finished`,
    () => {
      assertNotStuck(ns, `ticclip.dev/run=${name}`);
      const j = job(trainJob.metadata.name);
      const done = j.status?.conditions?.find(
        (c: { type: string; status: string }) => ["Complete", "Failed"].includes(c.type) && c.status === "True",
      );
      return done ? { job: j, condition: done } : undefined;
    },
    600_000,
    1000,
  ).catch((err) => {
    throw new Error(`${String(err)}\n${events(ns)}`);
  });
  return { ...finished, runs };
}

test("a 2-node round (nodes: 2 on CPU): both pods of the Indexed Job rendezvous through the headless Service and CoreDNS (gloo), the round trains", async () => {
  const { data, runs } = await createRun(ns, "duo", { trainer: { nodes: 2, gpusPerNode: 0 } });
  writeSlices(data, ["2016"]);
  await roundsTrained(ns, "duo", 1, 600_000).catch((err) => {
    throw new Error(`${String(err)}\n${events(ns)}`);
  });
  const j = await jobComplete("duo", 120_000);
  assert.equal(j.spec.completionMode, "Indexed");
  assert.equal(j.status.succeeded, 2);
  assert.equal(j.status.failed ?? 0, 0);
  const trainers = pods(ns, "ticclip.dev/run=duo,ticclip.dev/component=trainer");
  assert.deepEqual(trainers.map((p) => p.metadata.labels!["batch.kubernetes.io/job-completion-index"]).sort(), [
    "0",
    "1",
  ]);
  // Rank 1 found rank 0 by its DNS name (<job>-0.<service>): CoreDNS answering for the headless Service.
  assert.match(
    podLogs(
      ns,
      trainers.find((p) => p.metadata.labels!["batch.kubernetes.io/job-completion-index"] === "1")!.metadata.name,
    ),
    /master_addr=duo-r0000-train-0\.duo-r0000-rdzv/,
  );
  const summary = await getJson(runs, "duo/rounds/0000/train_summary.json");
  assert.equal(summary.worldSize, 2, "two ranks trained the round");
  assert.equal(summary.samplesSeen, 256);
});

test("a 2-node Job whose pods exit 2 (invalid plan) fails at once", async () => {
  const { job: j, condition } = await twoNodeJob("duobad", (p) => {
    p.model.architecture = "no-such-model";
  });
  assert.equal(condition.type, "Failed");
  assert.equal(condition.reason, "PodFailurePolicy");
  assert.ok((j.status.failed ?? 0) <= 2, "no retries: at most the two pods of the first attempt");
});
