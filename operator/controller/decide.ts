// Pure decisions: observed state in, desired status, actions and events out. No I/O, no clock.
import { isDeepStrictEqual } from "node:util";
import { formatIssues, isoSeconds } from "../api/common.ts";
import { continualClipRunSpec, STATUS_LIMITS, type ContinualClipRunStatus } from "../api/continual-clip-run.ts";
import { compareSliceIds } from "../api/slice-manifest.ts";
import { sliceStatus } from "../data/discovery.ts";
import type { Slice } from "../data/validate.ts";
import type { RawObject } from "../kube/client.ts";
import { promotedStatus } from "../promotion/versions.ts";
import { decideAlias } from "./alias.ts";
import { decideGit, GIT_CONDITION } from "./git.ts";
import {
  findCondition,
  healthConditions,
  invalidSpecConditions,
  setCondition,
  type ConditionUpdate,
} from "./conditions.ts";
import { decideProgress, TRAINER_STALLED } from "./progress.ts";
import { decideRounds } from "./rounds.ts";
import { boundStatus, boundText, describeSlices } from "./status-bounds.ts";
import type { Action, Decision, Observed, PlannedEvent, Problem } from "./types.ts";

export type { Decision, Observed, PlannedEvent, Problem } from "./types.ts";

const runRef = (run: RawObject) => ({
  name: run.metadata.name,
  namespace: run.metadata.namespace,
  uid: run.metadata.uid,
  generation: run.metadata.generation ?? 0,
});

/** `parsed`: the reconcile's parse of run.spec, so a reconcile parses the spec once. */
export function decide(
  run: RawObject,
  observedWorld: Observed,
  now: Date,
  parsed = continualClipRunSpec.safeParse(run.spec),
): Decision {
  let observed = observedWorld;
  const generation = run.metadata.generation ?? 0;
  const current = (run.status ?? {}) as ContinualClipRunStatus;
  const previousReady = findCondition(current.conditions, "Ready");
  const events: PlannedEvent[] = [];
  const conditions = (updates: ConditionUpdate[]) =>
    updates.reduce((list, u) => setCondition(list, u, generation, now), current.conditions ?? []);

  if (!parsed.success) {
    const message = formatIssues(parsed.error, { prefix: "spec.", root: "spec." });
    const next: ContinualClipRunStatus = {
      ...current,
      observedGeneration: generation,
      phase: "Invalid",
      conditions: conditions(invalidSpecConditions(message)),
    };
    // The condition keeps a bounded copy of the message: compare like with like.
    if (
      previousReady?.reason !== "InvalidSpec" ||
      previousReady.message !== boundText(message, STATUS_LIMITS.message)
    ) {
      events.push({ type: "Warning", reason: "InvalidSpec", message });
    }
    return { status: changed(current, boundStatus(next)), actions: [], events, outcome: "stalled" };
  }

  const spec = parsed.data;
  // What admission cannot know: the trainer image's own list of architectures.
  const shipped = observed.trainerArchitectures;
  if (shipped?.length && !shipped.includes(spec.model.architecture)) {
    const shown = shipped.length > 12 ? `${shipped.slice(0, 12).join(", ")}, ...` : shipped.join(", ");
    const problem = {
      reason: "ArchitectureNotShipped",
      message: `spec.model.architecture: ${spec.model.architecture} is not shipped by the trainer image (it has ${shown})`,
    };
    observed = { ...observed, problem: observed.problem ?? problem };
  }
  // In-process evaluation runs a run's models inside the shared operator: its administrator's choice.
  if (spec.evaluation.runner.mode === "InProcess" && observed.inProcessEvaluation === false) {
    const problem = {
      reason: "InProcessEvaluationDisabled",
      message:
        "spec.evaluation.runner.mode: InProcess evaluation is not enabled on this operator (its administrator's --in-process-evaluation); use mode Job",
    };
    observed = { ...observed, problem: observed.problem ?? problem };
  }
  const discovery = observed.discovery;
  const pointer = observed.alias && !("invalid" in observed.alias) ? observed.alias : undefined;
  const unobserved = observed.problem !== undefined && observed.rounds.length === 0;
  const promoted = pointer ? promotedStatus(pointer) : undefined;
  const rounds = decideRounds({
    run: runRef(run),
    spec,
    slices: observed.problem ? undefined : usableSlices(discovery),
    rounds: observed.rounds,
    previous: current.rounds,
    promoted,
    promotedCheckpoint: pointer?.uris.checkpoint,
    evaluatorImage: observed.evaluatorImage,
    annotations: (run.metadata as { annotations?: Record<string, string> }).annotations,
    now,
  });
  events.push(...rounds.events);

  for (const inv of discovery?.newInvalid ?? []) {
    events.push({ type: "Warning", reason: "InvalidSlice", message: `slice ${inv.id}: ${inv.reason}: ${inv.message}` });
  }
  for (const w of discovery?.warnings ?? [])
    events.push({ type: "Warning", reason: "SliceChanged", message: `slice ${w.id}: ${w.message}` });

  // Health: what keeps the run from making progress, most fundamental first.
  const s3Problem: Problem | undefined =
    observed.problem ??
    unreadableSlice(discovery) ??
    (discovery && !discovery.health.ok
      ? { reason: discovery.health.reason, message: `spec.source.s3: ${discovery.health.message}` }
      : undefined);
  // Rollback and the ConfigMap need only the promotion side: they wait when S3 could not be used at
  // all this time (the alias was not read), not for trouble with one slice of the source.
  const alias = observed.problem
    ? { actions: [] }
    : decideAlias({
        run: runRef(run),
        spec,
        alias: observed.alias,
        versions: observed.versions,
        configMap: observed.configMap,
      });
  // Git follows the alias as read, once the alias and ConfigMap step has nothing left to do; never
  // an alias this run does not own.
  const git =
    observed.problem || alias.promotionRefused
      ? { actions: [] }
      : decideGit({
          run: runRef(run),
          spec,
          alias: observed.alias,
          state: observed.git,
          rounds: rounds.rounds,
          aliasPending: alias.actions.some((a) => a.kind !== "ApplyConfigMap"),
          now,
        });
  const blocked: Problem | undefined =
    s3Problem ??
    alias.problem ??
    git.problem ??
    (rounds.waiting && rounds.waiting.reason !== "Suspended" ? rounds.waiting : undefined);

  const active = rounds.current;
  const health = healthConditions({
    blocked,
    active: active && { ...active, message: `round ${active.index} on ${describeSlices(active)}` },
    suspended: spec.suspend,
    watching: `s3://${spec.source.s3.bucket}/${spec.source.s3.prefix}`,
  });
  const ready = health.find((c) => c.type === "Ready")!;
  const trainer = decideProgress({
    spec,
    active,
    observed: observed.progress,
    previous: current.currentRound,
    previousCondition: findCondition(current.conditions, TRAINER_STALLED),
    now,
  });
  events.push(...trainer.events);

  // Late slices (completed after a later one was trained on) are reported invalid by discovery.
  const failed = rounds.failedSlices.length ? { failed: rounds.failedSlices } : {};
  // Every invalid slice goes in: boundStatus keeps the newest and counts them all.
  const slicesStatus = discovery ? { ...sliceStatus(discovery, rounds.consumed.length), ...failed } : current.slices;
  const next: ContinualClipRunStatus = {
    ...current,
    observedGeneration: generation,
    phase: active
      ? active.phase === "Pending" || active.phase === "Training"
        ? "Training"
        : "Evaluating"
      : spec.suspend
        ? "Suspended"
        : blocked
          ? "Degraded"
          : "Waiting",
    conditions: conditions([
      ...health,
      ...(git.condition ? [git.condition] : []),
      ...(trainer.condition ? [trainer.condition] : []),
    ]).filter(
      (c) =>
        (c.type !== GIT_CONDITION || spec.promotion?.git) &&
        (c.type !== TRAINER_STALLED || trainer.condition || unobserved),
    ),
    ...(slicesStatus ? { slices: { ...slicesStatus, consumed: rounds.consumed.length } } : {}),
    // When S3 or its Secret could not be read, nothing was observed: keep the last known rounds and
    // compute instead of reporting an empty history.
    ...(unobserved ? {} : { rounds: rounds.rounds, compute: rounds.compute }),
  };
  if (promoted) next.promoted = promoted;
  if (active)
    next.currentRound = {
      index: active.index,
      phase: active.phase,
      ...(active.job ? { job: active.job } : {}),
      ...(active.startedAt ? { startedAt: active.startedAt } : {}),
      ...(trainer.progress ? { progress: trainer.progress } : {}),
    };
  else if (!unobserved) delete next.currentRound;

  if (previousReady?.reason !== ready.reason) {
    events.push({ type: ready.status === "True" ? "Normal" : "Warning", reason: ready.reason, message: ready.message });
  }
  // S3 (a bucket, its credentials) could not be used: touch nothing until it can.
  // A promotion prefix that belongs to another run is written to by nothing of this run.
  const roundActions = alias.promotionRefused ? rounds.actions.filter((a) => a.kind !== "Promote") : rounds.actions;
  const restart = trainer.restart ? [trainer.restart] : [];
  const actions: Action[] = observed.problem ? [] : [...roundActions, ...restart, ...alias.actions, ...git.actions];
  return { status: changed(current, boundStatus(next)), actions, events, outcome: "done", spec };
}

/**
 * The slices decisions may use: all valid ones after a pass without errors; after a pass whose only
 * errors were slice folders it could not read, the valid ones before the oldest such folder (rounds
 * follow slice order, so nothing after it may train); none when the source could not be listed.
 */
function usableSlices(discovery: Observed["discovery"]): Slice[] | undefined {
  if (!discovery) return undefined;
  if (discovery.errors.length === 0) return discovery.slices;
  const first = discovery.unreadable?.[0];
  if (!first || discovery.errors.length !== discovery.unreadable.length) return undefined;
  return discovery.slices.filter((s) => compareSliceIds(s.id, first.id) < 0);
}

/**
 * The oldest slice folder S3 would not let discovery read, named with its key: it stays pending
 * and holds back the slices after it (rounds follow slice order) until it can be read, or until a
 * permanent answer or the --slice-unreadable-after bound makes it an invalid slice.
 */
function unreadableSlice(discovery: Observed["discovery"]): Problem | undefined {
  const t = discovery?.unreadable?.[0];
  if (!t) return undefined;
  const until = t.permanent
    ? "it becomes an invalid slice if S3 keeps refusing it"
    : `it becomes an invalid slice only if this goes on until ${t.invalidAfter ? isoSeconds(t.invalidAfter) : "the bound"}`;
  return {
    reason: t.problem.reason,
    message: `spec.source.s3: slice ${t.id} cannot be read since ${isoSeconds(t.since)} (${t.polls} polls): ${t.problem.message}; it stays pending and later slices wait; ${until}`,
  };
}

function changed(current: ContinualClipRunStatus, next: ContinualClipRunStatus): ContinualClipRunStatus | undefined {
  return isDeepStrictEqual(current, next) ? undefined : next;
}
