// Where the evaluator runs, known without loading onnxruntime (evaluate.ts runs on the operator's
// thread and must not load it): execution providers, CPU threads, and the error for a missing
// provider, which the worker thread sends back by name.
import { readFileSync } from "node:fs";
import os from "node:os";

export const EXECUTION_PROVIDERS = ["cpu", "cuda"] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

/** The requested execution provider cannot be used (e.g. CUDA libraries absent): retry elsewhere. */
export class ExecutionProviderUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ExecutionProviderUnavailable";
  }
}

/**
 * Threads for a pod: its CPU limit (cgroup v2 `cpu.max` "quota period", or v1 quota and period)
 * rounded up, capped by the CPUs this process may run on. Without a limit, every available CPU.
 */
export function threadsFor(quota: number | undefined, period: number | undefined, available: number): number {
  if (!quota || !period || quota <= 0 || period <= 0) return Math.max(1, available);
  return Math.max(1, Math.min(available, Math.ceil(quota / period)));
}

function readCpuLimit(): [number | undefined, number | undefined] {
  const read = (f: string) => {
    try {
      return readFileSync(f, "utf8").trim();
    } catch {
      return undefined;
    }
  };
  const v2 = read("/sys/fs/cgroup/cpu.max")?.split(/\s+/);
  if (v2) return [v2[0] === "max" ? undefined : Number(v2[0]), Number(v2[1])];
  const q = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us");
  const p = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us");
  return [q === undefined || q === "-1" ? undefined : Number(q), p === undefined ? undefined : Number(p)];
}

/** Intra-op threads when none are requested: the pod's CPU limit or os.availableParallelism(). */
export function defaultIntraOpThreads(): number {
  const [quota, period] = readCpuLimit();
  return threadsFor(quota, period, os.availableParallelism());
}
