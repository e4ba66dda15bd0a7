// Test helpers for the local cluster started by dev/cluster.sh (npm test starts it and exports
// KUBECONFIG, KUBECTL and the S3 variables). Missing variables fail loudly: a test that silently
// skipped its cluster would prove nothing.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as k8s from "@kubernetes/client-node";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export function requireEnv(name: string): string {
  const value = process.env[name];
  if (!value)
    throw new Error(`${name} is not set: run integration tests through \`npm test\`, which starts the local cluster`);
  return value;
}

export function kubeConfig(): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(requireEnv("KUBECONFIG"));
  return kc;
}

export type CommandResult = { code: number; stdout: string; stderr: string };

export function kubectl(args: string[], input?: string): CommandResult {
  const res = spawnSync(requireEnv("KUBECTL"), ["--kubeconfig", requireEnv("KUBECONFIG"), ...args], {
    input,
    encoding: "utf8",
    timeout: 60_000,
  });
  return { code: res.status ?? -1, stdout: res.stdout, stderr: res.stderr };
}

export function kubectlOk(args: string[], input?: string): string {
  const res = kubectl(args, input);
  if (res.code !== 0) throw new Error(`kubectl ${args.join(" ")} failed (${res.code}): ${res.stderr}`);
  return res.stdout;
}

export function applyCrds(): void {
  kubectlOk(["apply", "--server-side", "--force-conflicts", "-f", path.join(REPO_ROOT, "crds")]);
  waitEstablished("continualclipruns.ticclip.dev");
}

/**
 * Waits (up to 60 s) until the CRD NAME is Established. Not `kubectl wait`: on a fresh cluster it
 * fails outright while the just-created CRD has no conditions yet (".status.conditions accessor
 * error: <nil>"), which failed the first integration test of a cold CI run.
 */
export function waitEstablished(name: string): void {
  const deadline = Date.now() + 60_000;
  const jsonpath = `jsonpath={.status.conditions[?(@.type=="Established")].status}`;
  let last: CommandResult | undefined;
  while (Date.now() < deadline) {
    last = kubectl(["get", "crd", name, "-o", jsonpath]);
    if (last.code === 0 && last.stdout.trim() === "True") return;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
  }
  throw new Error(`CRD ${name} not Established after 60 s: ${last?.stdout ?? ""}${last?.stderr ?? ""}`);
}

/** The label of every namespace a test or benchmark creates; `npm test` checks none outlives the suite. */
export const TEST_NAMESPACE_LABEL = "ticclip.dev/test-namespace";
const created: string[] = [];

/**
 * Creates a namespace that is deleted when this process exits (each test file runs in a process of
 * its own), so no test leaves its namespace, Jobs and pods behind for the next one to share the
 * API server and the controllers with.
 */
export function createNamespace(prefix: string): string {
  const ns = `${prefix}-${randomBytes(3).toString("hex")}`;
  const manifest = {
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: ns, labels: { [TEST_NAMESPACE_LABEL]: "true" } },
  };
  kubectlOk(["create", "-f", "-"], JSON.stringify(manifest));
  if (created.push(ns) === 1) {
    process.once("exit", () => {
      kubectl(["delete", "namespace", ...created, "--wait=false", "--ignore-not-found"]);
    });
  }
  return ns;
}

export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ""}`);
}

export function clusterScript(...args: string[]): void {
  const res = spawnSync("bash", [path.join(REPO_ROOT, "dev/cluster.sh"), ...args], {
    encoding: "utf8",
    timeout: 300_000,
  });
  if (res.status !== 0) throw new Error(`dev/cluster.sh ${args.join(" ")} failed: ${res.stderr}`);
}

export type RunObject = {
  metadata: { name: string; namespace: string; generation: number; resourceVersion: string; uid: string };
  spec: Record<string, unknown>;
  status?: {
    observedGeneration?: number;
    phase?: string;
    conditions?: Array<{
      type: string;
      status: string;
      reason: string;
      message: string;
      lastTransitionTime: string;
      observedGeneration?: number;
    }>;
  };
};

export function getRun(namespace: string, name: string): RunObject | undefined {
  const res = kubectl(["get", "continualclipruns.ticclip.dev", name, "-n", namespace, "-o", "json"]);
  if (res.code !== 0) return undefined;
  return JSON.parse(res.stdout) as RunObject;
}

/**
 * The operator's own Kubernetes requests (its ticclip_kube_requests_total, read from its /metrics
 * on 127.0.0.1:PORT), summed by "verb resource" (e.g. "GET secrets"). Counted by the operator, so
 * other clients of the shared API server (the controller manager, kubectl, other tests) never show.
 */
export async function operatorKubeRequests(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("ticclip_kube_requests_total{")) continue;
    const verb = /verb="([^"]+)"/.exec(line)?.[1];
    const resource = /resource="([^"]*)"/.exec(line)?.[1];
    if (!verb || resource === undefined) continue;
    const key = `${verb} ${resource}`;
    out.set(key, (out.get(key) ?? 0) + Number(line.split(" ").at(-1)));
  }
  return out;
}

/** after - before, for the keys that moved. */
export function requestDelta(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const [k, v] of after) if (v - (before.get(k) ?? 0) > 0) out.set(k, v - (before.get(k) ?? 0));
  return out;
}
