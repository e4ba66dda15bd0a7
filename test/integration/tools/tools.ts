// The real tools the tests run (helm, promtool, dev/tools/gitops-health), built from the Go module
// proxy by dev/build-binaries.sh and cached; the first call builds a missing one.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import YAML from "yaml";
import { REPO_ROOT, requireEnv } from "../../support/cluster.ts";

export const CHART = path.join(REPO_ROOT, "charts/continual-clip-operator");
const paths = new Map<string, string>();

export function toolPath(name: "helm" | "promtool" | "gitops_health" | "kustomize" | "kserve_crd"): string {
  let p = paths.get(name);
  if (!p) {
    const script = path.join(REPO_ROOT, "dev/build-binaries.sh");
    const res = spawnSync("bash", [script, "--path", name], { encoding: "utf8" });
    if (res.status !== 0) throw new Error(`building ${name} failed: ${res.stderr}`);
    p = res.stdout.trim();
    paths.set(name, p);
  }
  return p;
}

export type Run = { code: number; stdout: string; stderr: string };

export function run(cmd: string, args: string[], input?: string): Run {
  const env = { ...process.env, HOME: tmpHome() };
  const res = spawnSync(cmd, args, { input, encoding: "utf8", timeout: 120_000, env });
  return { code: res.status ?? -1, stdout: res.stdout ?? "", stderr: res.stderr ?? "" };
}

export function ok(cmd: string, args: string[], input?: string): string {
  const r = run(cmd, args, input);
  if (r.code !== 0) {
    throw new Error(`${path.basename(cmd)} ${args.join(" ")} failed (${r.code}): ${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

// helm keeps caches and repository config under $HOME; tests must not touch the user's.
let home: string | undefined;
function tmpHome(): string {
  home ??= mkdtempSync(path.join(tmpdir(), "ticclip-tools-"));
  return home;
}

export function tmpFile(name: string, text: string): string {
  const file = path.join(tmpHome(), name);
  writeFileSync(file, text);
  return file;
}

/** helm with the local cluster's kubeconfig. */
export function helm(args: string[]): Run {
  return run(toolPath("helm"), ["--kubeconfig", requireEnv("KUBECONFIG"), ...args]);
}

export function helmOk(args: string[]): string {
  const r = helm(args);
  if (r.code !== 0) throw new Error(`helm ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** The chart rendered by `helm template` with --set values, as objects. */
export function renderChart(namespace: string, set: string[] = []): Array<Record<string, any>> {
  const out = helmOk(["template", "rel", CHART, "--namespace", namespace, ...set.flatMap((s) => ["--set", s])]);
  return YAML.parseAllDocuments(out)
    .map((d) => d.toJSON())
    .filter((o) => o);
}

export function readChartFile(rel: string): string {
  return readFileSync(path.join(CHART, rel), "utf8");
}
