// Pure decisions: observed state in, desired status and events out. No I/O, no clock reads.
import { isDeepStrictEqual } from "node:util";
import { continualClipRunSpec, type ContinualClipRunStatus } from "../api/continual-clip-run.ts";
import type { RawObject } from "../kube/client.ts";
import { findCondition, setCondition } from "./conditions.ts";
import type { EventType } from "../kube/client.ts";

export type PlannedEvent = { type: EventType; reason: string; message: string };

export type Decision = {
  /** The status to write, or undefined when the current one is already right. */
  status: ContinualClipRunStatus | undefined;
  events: PlannedEvent[];
  outcome: "done" | "stalled";
};

/** Formats zod issues as "spec.strategy.samplesPerRound: Too small ..." lines. */
export function describeIssues(issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>): string {
  return issues.map((i) => `spec.${i.path.map(String).join(".")}: ${i.message}`).join("; ");
}

export function decideStatus(run: RawObject, now: Date): Decision {
  const generation = run.metadata.generation ?? 0;
  const current = (run.status ?? {}) as ContinualClipRunStatus;
  const parsed = continualClipRunSpec.safeParse(run.spec);
  let next: ContinualClipRunStatus;
  const events: PlannedEvent[] = [];
  const previousReady = findCondition(current.conditions, "Ready");

  if (!parsed.success) {
    const message = describeIssues(parsed.error.issues);
    let conditions = setCondition(current.conditions, { type: "Ready", status: "False", reason: "InvalidSpec", message }, generation, now);
    conditions = setCondition(conditions, { type: "Stalled", status: "True", reason: "InvalidSpec", message }, generation, now);
    conditions = setCondition(conditions, { type: "Progressing", status: "False", reason: "InvalidSpec", message }, generation, now);
    next = { ...current, observedGeneration: generation, phase: "Invalid", conditions };
    if (previousReady?.reason !== "InvalidSpec" || previousReady.message !== message) {
      events.push({ type: "Warning", reason: "InvalidSpec", message });
    }
    return { status: changed(current, next), events, outcome: "stalled" };
  }

  const spec = parsed.data;
  const ready = spec.suspend
    ? { reason: "Suspended", message: "spec.suspend is true: no new rounds start" }
    : { reason: "WaitingForData", message: `watching s3://${spec.source.s3.bucket}/${spec.source.s3.prefix} for new slices` };
  let conditions = setCondition(current.conditions, { type: "Ready", status: "True", ...ready }, generation, now);
  conditions = setCondition(conditions, { type: "Stalled", status: "False", reason: "SpecValid", message: "" }, generation, now);
  conditions = setCondition(conditions, { type: "Progressing", status: "False", reason: ready.reason, message: ready.message }, generation, now);
  next = { ...current, observedGeneration: generation, phase: spec.suspend ? "Suspended" : "Waiting", conditions };
  if (previousReady?.reason !== ready.reason) {
    events.push({ type: "Normal", reason: ready.reason, message: ready.message });
  }
  return { status: changed(current, next), events, outcome: "done" };
}

function changed(current: ContinualClipRunStatus, next: ContinualClipRunStatus): ContinualClipRunStatus | undefined {
  return isDeepStrictEqual(current, next) ? undefined : next;
}
