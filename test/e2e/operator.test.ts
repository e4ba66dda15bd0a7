// The operator as a platform engineer first meets it: `helm install` of the chart with the image
// built from operator/Dockerfile, on a real node (kubelet + containerd + kube-proxy + CoreDNS). Then
// two rounds of a run on CPU, with trainer pods in the image built from trainer-image/Dockerfile and
// evaluation Jobs in the operator's image, all started by the kubelet.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { GetObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { createNamespace, getRun, kubectlOk, waitFor } from "../support/cluster.ts";
import {
  assertNotStuck,
  createRun,
  events,
  helmInstallOperator,
  helmOk,
  nodeName,
  operatorImage,
  pods,
  trainerImage,
} from "../support/e2e.ts";
import { createBucket, createS3Secret, roundsTrained, writeSlices } from "../support/local-run.ts";
import { s3Client } from "../support/s3.ts";

let ns = "";
let release = "";
const OPERATOR_PODS = "app.kubernetes.io/name=continual-clip-operator";

before(() => {
  ns = createNamespace("e2e-op");
  release = helmInstallOperator(ns, [ns]);
});
after(() => {
  if (release) helmOk(["uninstall", release, "-n", ns, "--wait", "--timeout", "120s"]);
});

/** One GET on a connection of its own (fetch keeps connections alive: kube-proxy would pick a pod once). */
function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => resolve(body));
      })
      .on("error", reject);
  });
}

async function getJson(bucket: string, key: string): Promise<any> {
  const res = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return JSON.parse(await res.Body!.transformToString());
}

test("helm install: the operator pods become Ready on the node, one takes the Lease, metrics answer through the Service", async () => {
  const ready = await waitFor(
    "both operator pods Ready",
    () => {
      assertNotStuck(ns, OPERATOR_PODS);
      const ps = pods(ns, OPERATOR_PODS);
      const isReady = (p: (typeof ps)[number]) =>
        p.status.conditions?.some((c) => c.type === "Ready" && c.status === "True");
      return ps.length === 2 && ps.every(isReady) ? ps : undefined;
    },
    240_000,
    1000,
  ).catch((err) => {
    throw new Error(`${String(err)}\n${events(ns)}`);
  });
  for (const p of ready) {
    assert.equal(p.spec.nodeName, nodeName(), "scheduled onto the real node");
    assert.equal(p.spec.containers[0]!.image, operatorImage());
  }
  const names = new Set(ready.map((p) => p.metadata.name));
  const holder = await waitFor(
    "the Lease held by an operator pod",
    () => {
      const h = kubectlOk([
        "get",
        "lease",
        "continual-clip-operator",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.holderIdentity}",
      ]).trim();
      return names.has(h) ? h : undefined;
    },
    60_000,
    500,
  );
  // The Service's ClusterIP, through kube-proxy's rules on this node.
  const svc = JSON.parse(kubectlOk(["get", "service", "-n", ns, "-l", OPERATOR_PODS, "-o", "json"])).items[0];
  const url = `http://${svc.spec.clusterIP}:${svc.spec.ports[0].port}/metrics`;
  const leaderGauge = async (u: string) => /^ticclip_leader (\d)$/m.exec(await httpGet(u))?.[1];
  // kube-proxy spreads connections over both pods: the leader's 1 and the standby's 0 both come back.
  const answers = await waitFor(
    "the leader's and the standby's metrics through the Service",
    async () => {
      const seen = new Set<string | undefined>();
      for (let i = 0; i < 30 && seen.size < 2; i++) seen.add(await leaderGauge(url));
      return seen.size === 2 ? seen : undefined;
    },
    60_000,
    1000,
  );
  assert.deepEqual([...answers].sort(), ["0", "1"]);
  // And the one saying 1 is the Lease holder.
  const holderPod = ready.find((p) => p.metadata.name === holder)!;
  assert.equal(await leaderGauge(`http://${holderPod.status.podIP}:${svc.spec.ports[0].port}/metrics`), "1");
});

test("two rounds on CPU: trainer pods in the trainer image, evaluation Jobs in the operator image, gates, promotion, ConfigMap", async (t) => {
  createS3Secret(ns);
  const models = await createBucket("e2e-models");
  const { data, runs } = await createRun(ns, "two", {
    evaluation: { gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0 }] },
    promotion: { mode: "Auto", s3: { bucket: models, prefix: "clip/" }, configMapName: "two-model" },
  });
  const watchStuck = setInterval(() => {
    try {
      assertNotStuck(ns, "ticclip.dev/run=two");
    } catch (err) {
      stuck = err as Error;
    }
  }, 2000);
  let stuck: Error | undefined;
  try {
    for (const [i, id] of ["2016", "2017"].entries()) {
      writeSlices(data, [id]);
      await roundsTrained(ns, "two", i + 1, 600_000).catch((err) => {
        throw stuck ?? new Error(`${String(err)}\n${events(ns)}`);
      });
    }
  } finally {
    clearInterval(watchStuck);
  }
  const status = getRun(ns, "two")!.status as any;
  assert.deepEqual(
    status.rounds.map((r: { index: number; phase: string }) => [r.index, r.phase]),
    [
      [0, "Promoted"],
      [1, "Promoted"],
    ],
  );
  // Round 1 warm-started from round 0's checkpoint.
  const plan = await getJson(runs, "two/rounds/0001/plan.json");
  assert.equal(plan.model.initCheckpoint, `s3://${runs}/two/rounds/0000/checkpoint.pt`);
  // Every pod of the run ran on the node, in the image its Job names. A trainer publishes its round
  // (_SUCCESS) before it exits, so its pod may still be finishing.
  const ran = await waitFor(
    "every pod of the run finished",
    () => {
      const ps = pods(ns, "ticclip.dev/run=two");
      return ps.every((p) => ["Succeeded", "Failed"].includes(p.status.phase)) ? ps : undefined;
    },
    120_000,
    1000,
  );
  const images = new Set(
    ran.map((p) => `${p.metadata.labels!["ticclip.dev/component"]} ${p.spec.containers[0]!.image}`),
  );
  assert.deepEqual([...images].sort(), [`evaluator ${operatorImage()}`, `trainer ${trainerImage()}`]);
  for (const p of ran) {
    assert.equal(p.spec.nodeName, nodeName());
    assert.equal(p.status.phase, "Succeeded", `${p.metadata.name}: ${JSON.stringify(p.status.containerStatuses)}`);
  }
  // What a kubelet adds to discovery: from the slice's _SUCCESS to the trainer container running.
  const success = await s3Client().send(new HeadObjectCommand({ Bucket: data, Key: "slices/2017/_SUCCESS" }));
  const trainer = ran.find((p) => p.metadata.name.startsWith("two-r0001-train"))!;
  const started = trainer.status.containerStatuses![0]!.state.terminated!.startedAt!;
  t.diagnostic(
    `_SUCCESS of slice 2017 to round 1's trainer container running: ${(Date.parse(started) - success.LastModified!.getTime()) / 1000} s`,
  );
  const ev = await getJson(runs, "two/rounds/0001/eval.json");
  assert.equal(ev.status, "Succeeded");
  assert.equal(ev.matrix.values.length, 2, "TiC matrix: a row per round");
  // The model ConfigMap follows the alias: version 2, round 1.
  const cm = JSON.parse(kubectlOk(["get", "configmap", "two-model", "-n", ns, "-o", "json"]));
  assert.equal(cm.data.version, "2");
  assert.equal(cm.data.round, "1");
  assert.match(cm.data.uri, new RegExp(`^s3://${models}/clip/v2/`));
  assert.equal(status.promoted?.version, 2);
});
