import { test } from "node:test";
import assert from "node:assert/strict";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import { buildRendezvousService, buildTrainJob } from "../../../operator/training/job.ts";
import { trainJobName } from "../../../operator/kube/objects.ts";

const RUN = { name: "demo", namespace: "ns", uid: "uid-1", generation: 3 };
const spec = (trainer: Record<string, unknown> = {}, s3: Record<string, unknown> = {}) =>
  continualClipRunSpec.parse({
    source: {
      s3: { bucket: "data", endpoint: "http://minio:9000", credentialsSecretRef: { name: "s3-creds" }, ...s3 },
    },
    model: { architecture: "ViT-B-16" },
    strategy: { samplesPerRound: 1000 },
    trainer: {
      image: "trainer:1",
      gpusPerNode: 8,
      queueName: "gpu-queue",
      resources: { requests: { cpu: "32", memory: "256Gi" } },
      ...trainer,
    },
    artifacts: { s3: { bucket: "runs" } },
  });

test("names are deterministic and fit 63 characters", () => {
  assert.equal(trainJobName("demo", 5), "demo-r0005-train");
  const long = trainJobName("a".repeat(80), 12);
  assert.ok(long.length <= 63);
  assert.match(long, /-r0012-train$/);
  assert.equal(long, trainJobName("a".repeat(80), 12));
  assert.notEqual(trainJobName("a".repeat(80) + "x", 12), trainJobName("a".repeat(80) + "y", 12));
});

test("a single-node Job: GPUs, retries, Kueue label, owner, security, credentials by reference", () => {
  const job = buildTrainJob({ run: RUN, spec: spec(), round: 5, planUri: "s3://runs/rounds/0005/plan.json" });
  const pod = job.spec.template.spec;
  const c = pod.containers[0];
  assert.equal(job.metadata.name, "demo-r0005-train");
  assert.equal(job.metadata.labels["kueue.x-k8s.io/queue-name"], "gpu-queue");
  assert.equal(job.spec.suspend, undefined, "never touches spec.suspend (Kueue owns it)");
  assert.deepEqual(job.metadata.ownerReferences, [
    {
      apiVersion: "ticclip.dev/v1alpha1",
      kind: "ContinualClipRun",
      name: "demo",
      uid: "uid-1",
      controller: true,
      blockOwnerDeletion: true,
    },
  ]);
  assert.equal(job.spec.backoffLimit, 2);
  assert.deepEqual(job.spec.podFailurePolicy.rules[0].onExitCodes, {
    containerName: "trainer",
    operator: "In",
    values: [2],
  });
  assert.equal(job.spec.podFailurePolicy.rules[0].action, "FailJob");
  assert.deepEqual(job.spec.podFailurePolicy.rules[1], {
    action: "Ignore",
    onPodConditions: [{ type: "DisruptionTarget", status: "True" }],
  });
  // A plain `kubectl delete pod` sets no DisruptionTarget: the trainer's exit 143 after SIGTERM.
  assert.deepEqual(job.spec.podFailurePolicy.rules[2], {
    action: "Ignore",
    onExitCodes: { containerName: "trainer", operator: "In", values: [143] },
  });
  assert.equal(c.resources.limits["nvidia.com/gpu"], 8);
  assert.equal(c.resources.requests.memory, "256Gi");
  assert.deepEqual(c.command, [
    "python",
    "-m",
    "ticclip_trainer",
    "train",
    "--plan",
    "s3://runs/rounds/0005/plan.json",
  ]);
  const env = Object.fromEntries(c.env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
  assert.equal(env.S3_ENDPOINT, "http://minio:9000");
  assert.deepEqual(env.AWS_SECRET_ACCESS_KEY, { secretKeyRef: { name: "s3-creds", key: "AWS_SECRET_ACCESS_KEY" } });
  assert.equal(env.MASTER_ADDR, undefined);
  // Loader workers are sized from the pod's CPU request (Downward API, whole CPUs).
  assert.deepEqual(env.TICCLIP_CPU_REQUEST, {
    resourceFieldRef: { containerName: "trainer", resource: "requests.cpu", divisor: "1" },
  });
  assert.equal(pod.restartPolicy, "Never");
  assert.equal(pod.terminationGracePeriodSeconds, 300, "time to save a B/16 checkpoint with optimizer state");
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.deepEqual(c.securityContext, {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
  });
  assert.deepEqual(pod.volumes[0], { name: "dshm", emptyDir: { medium: "Memory" } });
  assert.equal(job.spec.completionMode, undefined);
  assert.equal(buildRendezvousService({ run: RUN, spec: spec(), round: 5 }), undefined);
});

test("several nodes: an Indexed Job with a headless Service and torchrun rendezvous env", () => {
  const s = spec({ nodes: 4 });
  const job = buildTrainJob({ run: RUN, spec: s, round: 1, planUri: "s3://runs/p.json" });
  const svc = buildRendezvousService({ run: RUN, spec: s, round: 1 })!;
  assert.equal(job.spec.completionMode, "Indexed");
  assert.equal(job.spec.completions, 4);
  assert.equal(job.spec.parallelism, 4);
  assert.equal(job.spec.template.spec.subdomain, svc.metadata.name);
  assert.equal(svc.spec.clusterIP, "None");
  const env = Object.fromEntries(
    job.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value ?? e.valueFrom]),
  );
  assert.equal(env.MASTER_ADDR, `demo-r0001-train-0.${svc.metadata.name}`);
  assert.equal(env.NNODES, "4");
  assert.equal(env.NPROC_PER_NODE, "8");
  assert.deepEqual(env.NODE_RANK, {
    fieldRef: { fieldPath: "metadata.annotations['batch.kubernetes.io/job-completion-index']" },
  });
});

test("several CPU nodes (gpusPerNode 0) are accepted: one process per pod, gloo rendezvous", () => {
  const s = spec({ nodes: 2, gpusPerNode: 0 });
  const job = buildTrainJob({ run: RUN, spec: s, round: 0, planUri: "s3://runs/p.json" });
  assert.ok(buildRendezvousService({ run: RUN, spec: s, round: 0 }));
  assert.equal(job.spec.completions, 2);
  const c = job.spec.template.spec.containers[0];
  const env = Object.fromEntries(c.env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
  assert.equal(env.NNODES, "2");
  assert.equal(env.NPROC_PER_NODE, "1");
  assert.equal(c.resources.limits?.["nvidia.com/gpu"], undefined);
});

test("CPU-only trainer asks for no GPUs; no Secret means the default AWS chain", () => {
  const job = buildTrainJob({
    run: RUN,
    spec: spec({ gpusPerNode: 0 }, { credentialsSecretRef: undefined }),
    round: 0,
    planUri: "s3://r/p.json",
  });
  const c = job.spec.template.spec.containers[0];
  assert.equal(c.resources.limits, undefined);
  assert.equal(
    c.env.some((e: any) => e.name === "AWS_ACCESS_KEY_ID"),
    false,
  );
});

test("a multi-node run named with a dot and a leading digit gets a Job and a Service the API server accepts", () => {
  const run = { ...RUN, name: "7.demo" };
  const s = spec({ nodes: 2 });
  const job = buildTrainJob({ run, spec: s, round: 0, planUri: "s3://runs/p.json" });
  const svc = buildRendezvousService({ run, spec: s, round: 0 })!;
  const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
  const dns1035Label = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
  assert.match(job.metadata.name, dns1123Label);
  assert.match(svc.metadata.name, dns1035Label);
  assert.ok(job.metadata.name.length <= 63 && svc.metadata.name.length <= 63);
  assert.equal(job.spec.template.spec.subdomain, svc.metadata.name);
  assert.notEqual(trainJobName("7.demo", 0), trainJobName("7-demo", 0), "a dot and a dash do not collide");
  assert.equal(trainJobName("demo", 0), "demo-r0000-train", "names without dots are unchanged");
});

test("trainer pods mount no service-account token unless the spec names a service account", () => {
  const plain = buildTrainJob({ run: RUN, spec: spec(), round: 0, planUri: "s3://r/p.json" }).spec.template.spec;
  assert.equal(plain.automountServiceAccountToken, false);
  assert.equal(plain.serviceAccountName, undefined);
  const named = buildTrainJob({
    run: RUN,
    spec: spec({ serviceAccountName: "trainer" }),
    round: 0,
    planUri: "s3://r/p.json",
  }).spec.template.spec;
  assert.deepEqual([named.serviceAccountName, named.automountServiceAccountToken], ["trainer", true]);
});
