// What the Reconciler needs from the outside world, as small interfaces: the real adapters in
// kube/ and s3/ implement them, and unit tests pass fakes.
import type { ContinualClipRunStatus } from "../api/continual-clip-run.ts";
import type { EvalResult } from "../api/eval-result.ts";
import type { EvaluateRequest } from "../evaluation/evaluate.ts";
export type { GitAccess } from "../git/repository.ts";
import type { WorkerOptions } from "../evaluation/worker.ts";
import type { ChildClient } from "../kube/children.ts";
import type { EventType, RawObject } from "../kube/client.ts";
import type { S3Connection } from "../api/s3-connection.ts";
import type { ConditionalObjectStore, ObjectStore } from "../s3/object-store.ts";
import type { SliceStore } from "../s3/slice-store.ts";

export type RunAccess = {
  get(namespace: string, name: string): Promise<RawObject | undefined>;
  patchStatus(namespace: string, name: string, status: ContinualClipRunStatus): Promise<boolean>;
};

export type ChildAccess = Pick<
  ChildClient,
  "roundJobs" | "createIfAbsent" | "readConfigMap" | "applyConfigMap" | "secretData" | "evictJobPods"
>;

export type EventSink = { record(run: RawObject, type: EventType, reason: string, message: string): Promise<void> };

/** The S3 side of one run's connection: objects by URI, and slice listings of one bucket. */
export type Storage = { objects: ConditionalObjectStore; slices(bucket: string): SliceStore };
export type StorageFactory = (connection: S3Connection) => Storage;

/** Scores a round in this process (evaluation/evaluate.ts's evaluateRound), within limits and cancellable. */
export type Evaluate = (objects: ObjectStore, request: EvaluateRequest, options?: WorkerOptions) => Promise<EvalResult>;
