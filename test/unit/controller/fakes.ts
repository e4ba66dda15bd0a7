// In-memory stand-ins for the Reconciler's ports (controller/ports.ts): a run store with the API
// server's JSON merge patch semantics for /status, child objects, events, and S3 in memory; and
// fakeWorld, one run ns/demo with a Reconciler over them, the setup of the Reconciler tests.
import type { ContinualClipRunStatus } from "../../../operator/api/continual-clip-run.ts";
import type { ChildAccess, EventSink, RunAccess, Storage } from "../../../operator/controller/ports.ts";
import { Reconciler, type ReconcilerDeps } from "../../../operator/controller/reconcile.ts";
import type { JobObservation } from "../../../operator/kube/children.ts";
import type { RawObject } from "../../../operator/kube/client.ts";
import type { ConfigMap } from "../../../operator/kube/objects.ts";
import { ObjectRejected } from "../../../operator/kube/errors.ts";
import { MemoryObjectStore } from "../../../operator/s3/object-store.ts";
import { createLogger } from "../../../operator/observability/log.ts";
import { roundFiles } from "../../support/rounds.ts";
import { MemoryStore } from "../data/memory-store.ts";

/** RFC 7386: null deletes, objects merge, everything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> =
    target && typeof target === "object" && !Array.isArray(target) ? { ...(target as object) } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

export class FakeRuns implements RunAccess {
  readonly runs = new Map<string, RawObject>();
  patches = 0;
  add(run: RawObject): void {
    this.runs.set(`${run.metadata.namespace}/${run.metadata.name}`, run);
  }
  async get(namespace: string, name: string): Promise<RawObject | undefined> {
    const r = this.runs.get(`${namespace}/${name}`);
    return r && structuredClone(r);
  }
  async patchStatus(namespace: string, name: string, status: ContinualClipRunStatus): Promise<boolean> {
    const r = this.runs.get(`${namespace}/${name}`);
    if (!r) return false;
    this.patches++;
    r.status = mergePatch(r.status, JSON.parse(JSON.stringify(status)));
    return true;
  }
}

export class FakeChildren implements ChildAccess {
  readonly objects = new Map<string, Record<string, any>>();
  readonly configMaps = new Map<string, ConfigMap>();
  readonly secrets = new Map<string, Record<string, string>>();
  readonly trainer = new Map<number, JobObservation>();
  readonly evaluator = new Map<number, JobObservation>();
  async roundJobs(): Promise<Record<"trainer" | "evaluator", Map<number, JobObservation>>> {
    return { trainer: new Map(this.trainer), evaluator: new Map(this.evaluator) };
  }
  /** Kinds the fake API server refuses, with its message (an admission webhook, a quota...). */
  readonly refuse = new Map<string, string>();
  async createIfAbsent(obj: Record<string, any>): Promise<boolean> {
    const refusal = this.refuse.get(obj.kind);
    if (refusal) throw new ObjectRejected(422, `${obj.kind} ${obj.metadata.name}: ${refusal}`);
    const key = `${obj.kind}/${obj.metadata.name}`;
    if (this.objects.has(key)) return false;
    this.objects.set(key, obj);
    return true;
  }
  async readConfigMap(_namespace: string, name: string) {
    const cm = this.configMaps.get(name);
    return cm && { ownerUids: cm.metadata.ownerReferences.map((o) => o.uid), data: cm.data };
  }
  async applyConfigMap(cm: ConfigMap): Promise<"created" | "updated" | "unchanged"> {
    const existed = this.configMaps.has(cm.metadata.name);
    this.configMaps.set(cm.metadata.name, structuredClone(cm));
    return existed ? "updated" : "created";
  }
  async secretData(_namespace: string, name: string) {
    const data = this.secrets.get(name);
    return data && { data };
  }
  /** Jobs whose pods were evicted, in order. */
  readonly evicted: string[] = [];
  async evictJobPods(_namespace: string, job: string): Promise<string[]> {
    this.evicted.push(job);
    return [`${job}-pod`];
  }
}

export class FakeEvents implements EventSink {
  readonly list: { type: string; reason: string; message: string }[] = [];
  async record(_run: RawObject, type: string, reason: string, message: string): Promise<void> {
    this.list.push({ type, reason, message });
  }
}

/** One in-memory S3: objects by URI, and the slice bucket "data" (MemoryStore's). */
export function memoryStorage(): { storage: Storage; objects: MemoryObjectStore; slices: MemoryStore } {
  const objects = new MemoryObjectStore();
  const slices = new MemoryStore();
  return { objects, slices, storage: { objects, slices: () => slices } };
}

export const quietLog = createLogger(process.env.TEST_LOG ?? "error");

/** The Reconciler tests' clock, unless a test moves it (fakeWorld's setNow). */
export const WORLD_NOW = new Date("2026-05-01T00:00:00Z");

type WorldCondition = { type: string; status: string; reason: string; message: string };

/**
 * The run ns/demo (uid-1 unless given): slices from s3://data/slices/, artifacts in s3://runs/demo/,
 * a CPU trainer, 20 samples a round; `spec` fields replace these.
 */
export function demoRun(spec: Record<string, unknown> = {}, uid = "uid-1", namespace = "ns"): RawObject {
  return {
    metadata: { name: "demo", namespace, uid, generation: 1 },
    spec: {
      source: { s3: { bucket: "data", prefix: "slices/" } },
      model: { architecture: "ticclip-tiny" },
      strategy: { samplesPerRound: 20 },
      trainer: { image: "trainer:1", gpusPerNode: 0 },
      artifacts: { s3: { bucket: "runs", prefix: "demo/" } },
      ...spec,
    },
  };
}

/**
 * One run (demoRun) against the fakes: its Reconciler, and `another` to make a new one over the same
 * world (a restarted operator, or other options: empty memory). The run names no Secret: the
 * operator's own identity (here: in-memory S3) is allowed. `deps` go to every Reconciler made.
 */
export function fakeWorld(o: { spec?: Record<string, unknown>; deps?: Partial<ReconcilerDeps>; uid?: string } = {}) {
  const runs = new FakeRuns();
  const children = new FakeChildren();
  const events = new FakeEvents();
  const s3 = memoryStorage();
  runs.add(demoRun(o.spec, o.uid));
  let now = WORLD_NOW;
  const another = (extra: Partial<ReconcilerDeps> = {}) =>
    new Reconciler({
      runs,
      children,
      events,
      log: quietLog,
      now: () => now,
      storage: () => s3.storage,
      allowDefaultCredentials: true,
      ...o.deps,
      ...extra,
    });
  const reconciler = another();
  const status = () =>
    (runs.runs.get("ns/demo")!.status ?? {}) as Record<string, unknown> & { conditions?: WorldCondition[] };
  return {
    runs,
    children,
    events,
    s3,
    reconciler,
    another,
    reconcile: () => reconciler.reconcile("ns/demo"),
    status,
    condition: (type: string) => status().conditions?.find((c) => c.type === type),
    /** A JSON object of the in-memory S3, parsed; undefined when absent. */
    json: (uri: string) => {
      const raw = s3.objects.objects.get(uri);
      return raw && JSON.parse(new TextDecoder().decode(raw));
    },
    /** Round `index`'s folder as the trainer (and evaluator) leave it (test/support/rounds.ts). */
    seed: (index: number, seed: Parameters<typeof roundFiles>[3] = {}, bucket = "runs", prefix = "demo/") => {
      for (const [key, body] of roundFiles(bucket, prefix, index, seed))
        void s3.objects.put(`s3://${bucket}/${key}`, body);
    },
    setNow: (d: Date) => {
      now = d;
    },
    now: () => now,
  };
}
