// Pure decisions: observed state in, desired status, actions and events out. No I/O, no clock.
import { isDeepStrictEqual } from "node:util";
import { formatIssues, isoSeconds } from "../api/common.ts";
import {
  continualClipRunSpec,
  STATUS_LIMITS,
  type ContinualClipRunSpec,
  type ContinualClipRunStatus,
} from "../api/continual-clip-run.ts";
import { compareSliceIds } from "../api/slice-manifest.ts";
import { sliceStatus } from "../data/discovery.ts";
import type { Slice } from "../data/validate.ts";
import type { RawObject } from "../kube/client.ts";
import { promotedStatus } from "../promotion/versions.ts";
import { decideAlias, type AliasDecision } from "./alias.ts";
import { decideGit, GIT_CONDITION, type GitDecision } from "./git.ts";
import {
  findCondition,
  healthConditions,
  invalidSpecConditions,
  setCondition,
  type ConditionUpdate,
} from "./conditions.ts";
import { decideProgress, TRAINER_STALLED, type ProgressDecision } from "./progress.ts";
import { decideRounds } from "./rounds.ts";
import { boundStatus, boundText, describeSlices } from "./status-bounds.ts";
import type { Action, Decision, Observed, PlannedEvent, Problem, RoundRecord, RoundsDecision } from "./types.ts";

export type { Decision, Observed, PlannedEvent, Problem } from "./types.ts";

const runRef = (run: RawObject) => ({
  name: run.metadata.name,
  namespace: run.metadata.namespace,
  uid: run.metadata.uid,
  generation: run.metadata.generation ?? 0,
});

/**
 * The whole decision for one run, top to bottom: the spec (invalidSpec), what the operator refuses
 * (operatorRefusal), the rounds (rounds.ts), the promotion side (promotionSide: alias, ConfigMap,
 * Git), what blocks the run, its health conditions, the training round's progress, then the status
 * (runStatus), events and actions. `parsed`: the reconcile's parse of run.spec, so a reconcile
 * parses the spec once.
 */
export function decide(
  run: RawObject,
  observedWorld: Observed,
  now: Date,
  parsed = continualClipRunSpec.safeParse(run.spec),
): Decision {
  const current = (run.status ?? {}) as ContinualClipRunStatus;
  if (!parsed.success)
    return invalidSpec(run, current, formatIssues(parsed.error, { prefix: "spec.", root: "spec." }), now);
  const spec = parsed.data;
  const refusal = observedWorld.problem ?? operatorRefusal(spec, observedWorld);
  const observed: Observed = refusal ? { ...observedWorld, problem: refusal } : observedWorld;
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
  const { alias, git } = promotionSide(run, spec, observed, rounds, now);
  // Health: what keeps the run from making progress, most fundamental first.
  const blocked: Problem | undefined =
    storageProblem(observed) ??
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
  const trainer = decideProgress({
    spec,
    active,
    observed: observed.progress,
    previous: current.currentRound,
    previousCondition: findCondition(current.conditions, TRAINER_STALLED),
    now,
  });
  const next = runStatus({ run, current, spec, now, discovery, rounds, health, git, trainer, blocked, unobserved });
  if (promoted) next.promoted = promoted;

  const ready = health.find((c) => c.type === "Ready")!;
  const events: PlannedEvent[] = [...rounds.events, ...sliceEvents(discovery), ...trainer.events];
  if (findCondition(current.conditions, "Ready")?.reason !== ready.reason) {
    events.push({ type: ready.status === "True" ? "Normal" : "Warning", reason: ready.reason, message: ready.message });
  }
  // S3 (a bucket, its credentials) could not be used: touch nothing until it can.
  // A promotion prefix that belongs to another run is written to by nothing of this run.
  const roundActions = alias.promotionRefused ? rounds.actions.filter((a) => a.kind !== "Promote") : rounds.actions;
  const restart = trainer.restart ? [trainer.restart] : [];
  const actions: Action[] = observed.problem ? [] : [...roundActions, ...restart, ...alias.actions, ...git.actions];
  return { status: changed(current, boundStatus(next)), actions, events, outcome: "done", spec };
}

/** A spec the schema rejects: phase Invalid, the conditions name the field, an Event once per message. */
function invalidSpec(run: RawObject, current: ContinualClipRunStatus, message: string, now: Date): Decision {
  const generation = run.metadata.generation ?? 0;
  const next: ContinualClipRunStatus = {
    ...current,
    observedGeneration: generation,
    phase: "Invalid",
    conditions: invalidSpecConditions(message).reduce(
      (list, u) => setCondition(list, u, generation, now),
      current.conditions ?? [],
    ),
  };
  const previousReady = findCondition(current.conditions, "Ready");
  // The condition keeps a bounded copy of the message: compare like with like.
  const repeated =
    previousReady?.reason === "InvalidSpec" && previousReady.message === boundText(message, STATUS_LIMITS.message);
  const events: PlannedEvent[] = repeated ? [] : [{ type: "Warning", reason: "InvalidSpec", message }];
  return { status: changed(current, boundStatus(next)), actions: [], events, outcome: "stalled" };
}

/**
 * What this operator refuses of a valid spec, which admission cannot know: an architecture the
 * trainer image does not ship, or in-process evaluation its administrator has not enabled.
 */
function operatorRefusal(spec: ContinualClipRunSpec, observed: Observed): Problem | undefined {
  const shipped = observed.trainerArchitectures;
  if (shipped?.length && !shipped.includes(spec.model.architecture)) {
    const shown = shipped.length > 12 ? `${shipped.slice(0, 12).join(", ")}, ...` : shipped.join(", ");
    return {
      reason: "ArchitectureNotShipped",
      message: `spec.model.architecture: ${spec.model.architecture} is not shipped by the trainer image (it has ${shown})`,
    };
  }
  // In-process evaluation runs a run's models inside the shared operator: its administrator's choice.
  if (spec.evaluation.runner.mode === "InProcess" && observed.inProcessEvaluation === false) {
    return {
      reason: "InProcessEvaluationDisabled",
      message:
        "spec.evaluation.runner.mode: InProcess evaluation is not enabled on this operator (its administrator's --in-process-evaluation); use mode Job",
    };
  }
  return undefined;
}

/** Events of a discovery pass: slices newly found invalid, and slices changed after a round consumed them. */
function sliceEvents(discovery: Observed["discovery"]): PlannedEvent[] {
  return [
    ...(discovery?.newInvalid ?? []).map(
      (inv): PlannedEvent => ({
        type: "Warning",
        reason: "InvalidSlice",
        message: `slice ${inv.id}: ${inv.reason}: ${inv.message}`,
      }),
    ),
    ...(discovery?.warnings ?? []).map(
      (w): PlannedEvent => ({ type: "Warning", reason: "SliceChanged", message: `slice ${w.id}: ${w.message}` }),
    ),
  ];
}

/** Why S3 holds the run back: S3 or its Secret unusable, an unreadable slice folder, or an unhealthy source. */
function storageProblem(observed: Observed): Problem | undefined {
  const discovery = observed.discovery;
  return (
    observed.problem ??
    unreadableSlice(discovery) ??
    (discovery && !discovery.health.ok
      ? { reason: discovery.health.reason, message: `spec.source.s3: ${discovery.health.message}` }
      : undefined)
  );
}

/**
 * The promotion side: the alias and ConfigMap (alias.ts), then Git (git.ts). Rollback and the
 * ConfigMap need only the promotion side: they wait when S3 could not be used at all this time (the
 * alias was not read), not for trouble with one slice of the source. Git follows the alias as read,
 * once the alias and ConfigMap step has nothing left to do; never an alias this run does not own.
 */
function promotionSide(
  run: RawObject,
  spec: ContinualClipRunSpec,
  observed: Observed,
  rounds: RoundsDecision,
  now: Date,
): { alias: AliasDecision; git: GitDecision } {
  const alias: AliasDecision = observed.problem
    ? { actions: [] }
    : decideAlias({
        run: runRef(run),
        spec,
        alias: observed.alias,
        versions: observed.versions,
        configMap: observed.configMap,
      });
  const git: GitDecision =
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
  return { alias, git };
}

/** The run's phase: its active round's (Training or Evaluating), else Suspended, Degraded or Waiting. */
function runPhase(
  active: RoundRecord | undefined,
  suspended: boolean,
  blocked: Problem | undefined,
): ContinualClipRunStatus["phase"] {
  if (active) return active.phase === "Pending" || active.phase === "Training" ? "Training" : "Evaluating";
  if (suspended) return "Suspended";
  return blocked ? "Degraded" : "Waiting";
}

/** status.currentRound of the active round, with the trainer's progress while it trains. */
function currentRoundStatus(
  active: RoundRecord,
  progress: ProgressDecision["progress"],
): NonNullable<ContinualClipRunStatus["currentRound"]> {
  return {
    index: active.index,
    phase: active.phase,
    ...(active.job ? { job: active.job } : {}),
    ...(active.startedAt ? { startedAt: active.startedAt } : {}),
    ...(progress ? { progress } : {}),
  };
}

/** The status as decided, before status-bounds.ts bounds it (status.promoted is added by decide). */
function runStatus(o: {
  run: RawObject;
  current: ContinualClipRunStatus;
  spec: ContinualClipRunSpec;
  now: Date;
  discovery: Observed["discovery"];
  rounds: RoundsDecision;
  health: ConditionUpdate[];
  git: GitDecision;
  trainer: ProgressDecision;
  blocked: Problem | undefined;
  /** S3 or its Secret could not be read: nothing was observed. */
  unobserved: boolean;
}): ContinualClipRunStatus {
  const { current, spec, rounds, trainer, unobserved } = o;
  const generation = o.run.metadata.generation ?? 0;
  const active = rounds.current;
  const conditions = [
    ...o.health,
    ...(o.git.condition ? [o.git.condition] : []),
    ...(trainer.condition ? [trainer.condition] : []),
  ]
    .reduce((list, u) => setCondition(list, u, generation, o.now), current.conditions ?? [])
    .filter(
      (c) =>
        (c.type !== GIT_CONDITION || spec.promotion?.git) &&
        (c.type !== TRAINER_STALLED || trainer.condition || unobserved),
    );
  // Late slices (completed after a later one was trained on) are reported invalid by discovery.
  const failed = rounds.failedSlices.length ? { failed: rounds.failedSlices } : {};
  // Every invalid slice goes in: boundStatus keeps the newest and counts them all.
  const slices = o.discovery ? { ...sliceStatus(o.discovery, rounds.consumed.length), ...failed } : current.slices;
  const next: ContinualClipRunStatus = {
    ...current,
    observedGeneration: generation,
    phase: runPhase(active, spec.suspend, o.blocked),
    conditions,
    ...(slices ? { slices: { ...slices, consumed: rounds.consumed.length } } : {}),
    // When S3 or its Secret could not be read, nothing was observed: keep the last known rounds and
    // compute instead of reporting an empty history.
    ...(unobserved ? {} : { rounds: rounds.rounds, compute: rounds.compute }),
  };
  if (active) next.currentRound = currentRoundStatus(active, trainer.progress);
  else if (!unobserved) delete next.currentRound;
  return next;
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
