// Issue 21 ("Operator trust, round two"), the High items against the real kube-apiserver, MinIO and
// the operator as a process. S3 faults come from a proxy in front of MinIO (test/support/s3-proxy.ts)
// that fails chosen keys for a while and then heals; rounds start from folders already trained.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { GetObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { applyCrds, createNamespace, getRun, kubectl, kubectlOk, waitFor } from "../support/cluster.ts";
import {
  createBucket,
  createS3Secret,
  localRunManifest,
  runRounds,
  startOperator,
  type Proc,
} from "../support/local-run.ts";
import { roundFiles, type SeedOptions } from "../support/rounds.ts";
import { faultProxy, type FaultProxy } from "../support/s3-proxy.ts";
import { putObject, s3Client } from "../support/s3.ts";

let ns = "";
let operator: Proc;
let proxy: FaultProxy;

before(async () => {
  applyCrds();
  ns = createNamespace("trust2");
  createS3Secret(ns);
  proxy = await faultProxy();
  operator = startOperator([ns], ["--s3-timeout-seconds", "3"]);
});
after(async () => {
  await operator?.stop();
  await proxy?.close();
});

async function seed(bucket: string, name: string, index: number, o: SeedOptions = {}): Promise<void> {
  for (const [key, body] of roundFiles(bucket, `${name}/`, index, { run: { namespace: ns, name }, ...o }))
    await putObject(s3Client(), bucket, key, body);
}

async function exists(bucket: string, key: string): Promise<boolean> {
  try {
    await s3Client().send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch {
    return false;
  }
}

async function readJson(bucket: string, key: string): Promise<any> {
  try {
    const out = await s3Client().send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return JSON.parse(await out.Body!.transformToString());
  } catch {
    return undefined;
  }
}

const create = (manifest: unknown) => kubectlOk(["create", "-f", "-"], JSON.stringify(manifest));
type Condition = { type: string; status: string; reason: string; message: string };
const status = (name: string) =>
  (getRun(ns, name)?.status ?? {}) as { conditions?: Condition[]; promoted?: { version: number } };
const condition = (name: string, type: string) => status(name).conditions?.find((c) => c.type === type);
const configMap = (name: string) => {
  const r = kubectl(["get", "configmap", name, "-n", ns, "-o", "json"]);
  return r.code === 0 ? (JSON.parse(r.stdout) as { data: Record<string, string> }) : undefined;
};

test("High 1: an alias write that fails is completed once S3 heals; the ConfigMap and status.promoted follow", async () => {
  const data = await createBucket("trust2-data");
  const runs = await createBucket("trust2-runs");
  const models = await createBucket("trust2-models");
  await seed(runs, "alias", 0, { recall: 0.9, model: true });
  const heal = proxy.add({ match: new RegExp(`^PUT /${models}/clip/production\\.json$`), fault: "SlowDown" });
  const m = localRunManifest({
    namespace: ns,
    name: "alias",
    dataBucket: data,
    runsBucket: runs,
    spec: { promotion: { mode: "Auto", s3: { bucket: models, prefix: "clip/" }, configMapName: "alias-model" } },
  });
  m.spec.source.s3.endpoint = proxy.endpoint;
  m.spec.artifacts.s3.prefix = "alias/";
  create(m);
  await waitFor("v1 made", async () => (await exists(models, "clip/v1/version.json")) || undefined, 60_000, 500);
  // The alias PUT keeps failing: several passes go by with v1 complete and no alias.
  await waitFor(
    "alias writes refused",
    () => ((proxy.injected.get("SlowDown") ?? 0) >= 8 ? true : undefined),
    60_000,
    500,
  );
  assert.equal(await exists(models, "clip/production.json"), false);
  heal();
  const pointer = await waitFor(
    "alias on v1",
    async () => ((await readJson(models, "clip/production.json"))?.version === 1 ? true : undefined),
    60_000,
    500,
  );
  assert.ok(pointer);
  await waitFor(
    "ConfigMap on v1",
    () => (configMap("alias-model")?.data.version === "1" ? true : undefined),
    60_000,
    500,
  );
  await waitFor("status.promoted v1", () => (status("alias").promoted?.version === 1 ? true : undefined), 60_000, 500);
  assert.equal(runRounds(ns, "alias")[0]?.phase, "Promoted");
  assert.equal(condition("alias", "Ready")?.status, "True");
});
