// A ContinualClipRun wired to the local cluster's S3 server and trainer venv, plus the processes
// around it (operator, local executor), for integration tests of whole rounds.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { REPO_ROOT, applyCrds, createNamespace, getRun, kubectlOk, requireEnv, waitFor } from "./cluster.ts";
import { s3Client } from "./s3.ts";

export const TRAINER_IMAGE = "ticclip-trainer:dev";
/** The operator's image, which evaluation Jobs run (`node operator/evaluation/cli.ts evaluate`). */
export const OPERATOR_IMAGE = "ticclip-operator:dev";

/** The trainer venv (dev/python-venv.sh creates it once; npm test exports TICCLIP_VENV). */
export function venvPython(): string {
  let venv = process.env.TICCLIP_VENV;
  if (!venv) {
    const res = spawnSync("bash", [path.join(REPO_ROOT, "dev/python-venv.sh")], { encoding: "utf8" });
    if (res.status !== 0) throw new Error(`dev/python-venv.sh failed: ${res.stderr}`);
    venv = res.stdout.trim();
    process.env.TICCLIP_VENV = venv;
  }
  return path.join(venv, "bin/python");
}

export async function createBucket(prefix: string): Promise<string> {
  const bucket = `${prefix}-${randomBytes(4).toString("hex")}`;
  await s3Client().send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

/** The Secret the run's pods and the operator read S3 credentials from. */
export function createS3Secret(namespace: string, name = "s3-creds"): string {
  kubectlOk([
    "create",
    "secret",
    "generic",
    name,
    "-n",
    namespace,
    `--from-literal=AWS_ACCESS_KEY_ID=${requireEnv("AWS_ACCESS_KEY_ID")}`,
    `--from-literal=AWS_SECRET_ACCESS_KEY=${requireEnv("AWS_SECRET_ACCESS_KEY")}`,
  ]);
  return name;
}

/** A run training the tiny CPU model on slices under s3://<data>/slices/. */
export function localRunManifest(o: {
  namespace: string;
  name: string;
  dataBucket: string;
  runsBucket: string;
  spec?: Record<string, any>;
}) {
  const spec = o.spec ?? {};
  return {
    apiVersion: "ticclip.dev/v1alpha1",
    kind: "ContinualClipRun",
    metadata: { name: o.name, namespace: o.namespace },
    spec: {
      ...spec,
      source: {
        s3: {
          bucket: o.dataBucket,
          prefix: "slices/",
          endpoint: requireEnv("S3_ENDPOINT"),
          credentialsSecretRef: { name: "s3-creds" },
        },
        pollInterval: "2s",
        ...(spec.source ?? {}),
      },
      model: { architecture: "ticclip-tiny", ...(spec.model ?? {}) },
      strategy: {
        replay: "CumulativeAll",
        samplesPerRound: 256,
        ...(spec.strategy ?? {}),
        optimizer: { batchSize: 32, lr: 1e-3, precision: "fp32", ...(spec.strategy?.optimizer ?? {}) },
      },
      trainer: {
        image: TRAINER_IMAGE,
        gpusPerNode: 0,
        backoffLimit: 2,
        checkpointIntervalMinutes: 1,
        ...(spec.trainer ?? {}),
      },
      artifacts: { s3: { bucket: o.runsBucket, prefix: `${o.name}/` } },
    },
  };
}

/** Writes synthetic slices with the trainer's own generator (shards, manifest.json, _SUCCESS last). */
export function writeSlices(bucket: string, ids: string[], samples = 256): void {
  const res = spawnSync(
    venvPython(),
    [
      "-m",
      "ticclip_trainer",
      "synth",
      "--out",
      `s3://${bucket}/slices`,
      "--slices",
      ids.join(","),
      "--samples",
      String(samples),
      "--eval-samples",
      "64",
      "--shard-size",
      "128",
    ],
    {
      encoding: "utf8",
      env: { ...process.env },
      timeout: 120_000,
    },
  );
  if (res.status !== 0) throw new Error(`synth failed: ${res.stderr}`);
}

export type Proc = { child: ChildProcess; logFile: string; stop: (signal?: NodeJS.Signals) => Promise<void> };

function startProc(name: string, args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const logFile = path.join(
    REPO_ROOT,
    ".local",
    "test-logs",
    `${name}-${Date.now()}-${randomBytes(2).toString("hex")}.log`,
  );
  mkdirSync(path.dirname(logFile), { recursive: true });
  const out = createWriteStream(logFile);
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    cwd: REPO_ROOT,
  });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return {
    child,
    logFile,
    stop: async (signal = "SIGTERM") => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

export type ExecutorImage = { commandMap?: Record<string, string>; env?: Record<string, string>; cwd?: string };

/** The local executor, running trainer pods of these namespaces in the venv (plus extra images, and
 * trainerEnv added to the trainer pods' environment). */
export function startExecutor(
  namespaces: string[],
  extraImages: Record<string, ExecutorImage> = {},
  trainerEnv: Record<string, string> = {},
): Proc {
  const python = venvPython();
  const cfg = path.join(REPO_ROOT, ".local", `executor-${randomBytes(3).toString("hex")}.json`);
  mkdirSync(path.dirname(cfg), { recursive: true });
  writeFileSync(
    cfg,
    JSON.stringify({
      images: {
        [TRAINER_IMAGE]: {
          commandMap: { python },
          env: { PYTHONPATH: path.join(REPO_ROOT, "trainer-image/src"), ...trainerEnv },
          cwd: REPO_ROOT,
        },
        [OPERATOR_IMAGE]: { commandMap: { node: process.execPath }, env: {}, cwd: REPO_ROOT },
        ...extraImages,
      },
    }),
  );
  return startProc("executor", [
    path.join(REPO_ROOT, "dev/local-executor.ts"),
    "--config",
    cfg,
    "--namespaces",
    namespaces.join(","),
    "--kubeconfig",
    requireEnv("KUBECONFIG"),
    "--log-dir",
    path.join(REPO_ROOT, ".local", "executor"),
  ]);
}

/**
 * The node flags and environment the operator image runs with (operator/Dockerfile's last
 * ENTRYPOINT and its ENV lines), so tests and benchmarks measure the operator as it ships.
 */
export function imageRuntime(): { nodeArgs: string[]; env: Record<string, string> } {
  const dockerfile = readFileSync(path.join(REPO_ROOT, "operator/Dockerfile"), "utf8");
  const entrypoints = [...dockerfile.matchAll(/^ENTRYPOINT (\[.*\])$/gm)].map((m) => JSON.parse(m[1]!) as string[]);
  const entrypoint = entrypoints.at(-1);
  if (entrypoint?.[0] !== "node" || entrypoint.at(-1) !== "operator/main.ts") {
    throw new Error(
      `operator/Dockerfile: expected ENTRYPOINT ["node", ...flags, "operator/main.ts"], got ${entrypoint}`,
    );
  }
  const env = Object.fromEntries([...dockerfile.matchAll(/^ENV (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
  return { nodeArgs: entrypoint.slice(1, -1), env };
}

export function startOperator(namespaces: string[], extra: string[] = [], env: NodeJS.ProcessEnv = {}): Proc {
  const runtime = imageRuntime();
  return startProc(
    "operator",
    [
      ...runtime.nodeArgs,
      path.join(REPO_ROOT, "operator/main.ts"),
      "--kubeconfig",
      requireEnv("KUBECONFIG"),
      "--namespaces",
      namespaces.join(","),
      "--lease-namespace",
      namespaces[0]!,
      // Tests and the demo run without the operator image: rounds are scored in-process unless a
      // test passes --evaluator-image (or turns this off after it: the last flag wins).
      "--in-process-evaluation",
      "true",
      ...extra,
    ],
    { ...runtime.env, ...env },
  );
}

/** A namespace for one integration test file, named from `prefix`, with the CRDs applied and its S3 Secret. */
export function testNamespace(prefix: string): string {
  applyCrds();
  const ns = createNamespace(prefix);
  createS3Secret(ns);
  return ns;
}

/**
 * The prologue of an integration test file's before hook: its namespace (testNamespace), and as
 * asked the local executor running its trainer pods and the operator watching it (with `operator`'s
 * flags). stopAll(operator, executor) in the after hook stops them.
 */
export type LocalRunOptions = {
  executor?: { extraImages?: Record<string, ExecutorImage>; trainerEnv?: Record<string, string> };
  operator?: string[];
};

export function startLocalRun<O extends LocalRunOptions>(
  prefix: string,
  o: O,
): {
  ns: string;
  executor: O["executor"] extends object ? Proc : undefined;
  operator: O["operator"] extends string[] ? Proc : undefined;
} {
  const ns = testNamespace(prefix);
  const executor = o.executor ? startExecutor([ns], o.executor.extraImages, o.executor.trainerEnv) : undefined;
  const operator = o.operator ? startOperator([ns], o.operator) : undefined;
  return { ns, executor, operator } as never;
}

/** Stops the processes a test file started, in order (the operator before the executor it needs). */
export async function stopAll(...procs: (Proc | undefined)[]): Promise<void> {
  for (const p of procs) await p?.stop();
}

export type RoundView = {
  index: number;
  phase: string;
  slices: string[];
  initCheckpoint?: string;
  checkpoint?: string;
  reason?: string;
  message?: string;
};

/** status.rounds of a run (empty when it has none yet). */
export function runRounds(namespace: string, name: string): RoundView[] {
  return (getRun(namespace, name)?.status as { rounds?: RoundView[] } | undefined)?.rounds ?? [];
}

/** Rounds that trained and passed evaluation (Passed without promotion configured, or Promoted). */
export const DONE_PHASES = new Set(["Passed", "Promoted"]);

/** Waits until n rounds of the run are done; a Failed or Rejected round fails the wait with its reason. */
export function roundsTrained(namespace: string, name: string, n: number, timeoutMs = 300_000): Promise<RoundView[]> {
  return waitFor(
    `${name}: ${n} rounds trained and evaluated`,
    () => {
      const r = runRounds(namespace, name);
      const failed = r.find((x) => x.phase === "Failed" || x.phase === "Rejected");
      if (failed) throw new Error(`round ${failed.index} ${failed.phase}: ${failed.reason}: ${failed.message}`);
      return r.filter((x) => DONE_PHASES.has(x.phase)).length >= n ? r : undefined;
    },
    timeoutMs,
    1000,
  );
}
