// Sub-decider: the current round's progress (status.currentRound.progress) from the trainer's
// progress.json, and whether its trainer stalled (issue 26). Pure: `now` is passed in, and a stall
// is measured on the operator's clock (advancedAt), never the trainer's.
import { parseDuration } from "../api/common.ts";
import {
  STATUS_LIMITS,
  type Condition,
  type ContinualClipRunSpec,
  type ContinualClipRunStatus,
} from "../api/continual-clip-run.ts";
import type { ConditionUpdate } from "./conditions.ts";
import { TRAINED } from "./round-status.ts";
import { boundText } from "./status-bounds.ts";
import type { ObservedProgress, PlannedEvent, RoundAction, RoundRecord } from "./types.ts";

export const TRAINER_STALLED = "TrainerStalled";

type CurrentRound = NonNullable<ContinualClipRunStatus["currentRound"]>;
export type RoundProgress = NonNullable<CurrentRound["progress"]>;

type StallRestart = Extract<RoundAction, { kind: "EvictTrainer" }>;

export type ProgressDecision = {
  progress?: RoundProgress | undefined;
  /** TrainerStalled, while a round trains with progress; absent otherwise. */
  condition?: ConditionUpdate | undefined;
  events: PlannedEvent[];
  restart?: StallRestart | undefined;
};

const iso = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

/** 4500 s as "1h15m" (a duration as spec durations are written), rounded up to the second. */
export function formatEta(seconds: number): string {
  let s = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return `${h ? `${h}h` : ""}${m ? `${m}m` : ""}${s || (!h && !m) ? `${s}s` : ""}`;
}

/** What status shows of a progress.json: percent, samples, rate and ETA (when the rate is known), loss. */
function progressShown(v: NonNullable<ObservedProgress["value"]>): Omit<RoundProgress, "advancedAt"> {
  const rate = v.samplesPerSecond ?? undefined;
  const left = v.samplesTotal - v.samplesDone;
  return {
    phase: v.phase,
    percent: `${Math.min(100, Math.floor((100 * v.samplesDone) / v.samplesTotal))}%`,
    samplesDone: v.samplesDone,
    samplesTotal: v.samplesTotal,
    ...(rate !== undefined ? { samplesPerSecond: rate } : {}),
    ...(rate ? { eta: formatEta(left / rate) } : {}),
    ...(v.loss !== null ? { loss: v.loss } : {}),
    updatedAt: v.updatedAt,
  };
}

/**
 * The training round's progress in status, and TrainerStalled: samples done and phase unchanged
 * for spec.trainer.stallTimeout on the operator's clock; with restartOnStall, an EvictTrainer.
 */
export function decideProgress(input: {
  spec: ContinualClipRunSpec;
  active: RoundRecord | undefined;
  observed: ObservedProgress | undefined;
  previous: CurrentRound | undefined;
  previousCondition: Condition | undefined;
  now: Date;
}): ProgressDecision {
  const { spec, active, now } = input;
  if (!active) return { events: [] };
  const prev = input.previous?.index === active.index ? input.previous.progress : undefined;
  if (TRAINED.has(active.phase)) {
    // _SUCCESS is the trainer's word that every sample was seen: 100%, whatever was last read.
    if (!prev?.samplesTotal) return { events: [] };
    const { eta: _eta, problem: _problem, ...kept } = prev;
    return { progress: { ...kept, phase: "done", percent: "100%", samplesDone: prev.samplesTotal }, events: [] };
  }
  if (active.phase !== "Training") return { events: [] };
  const observed = input.observed?.round === active.index ? input.observed : undefined;
  const v = observed?.value;
  // An S3 error can be long: status keeps a bounded copy (the CRD refuses more).
  const problem = observed?.problem ? { problem: boundText(observed.problem, STATUS_LIMITS.message) } : {};
  if (!v)
    return prev || observed?.problem
      ? { progress: { ...prev, advancedAt: prev?.advancedAt ?? iso(now), ...problem }, events: [] }
      : { events: [] };

  const advanced = !prev || prev.samplesDone !== v.samplesDone || prev.phase !== v.phase;
  let advancedAt = advanced || !prev?.advancedAt ? iso(now) : prev.advancedAt;
  const timeout = spec.trainer.stallTimeout;
  const stalled = now.getTime() - Date.parse(advancedAt) >= parseDuration(timeout);
  const wasStalled = input.previousCondition?.status === "True";
  const what = `round ${active.index}: ${v.samplesDone} of ${v.samplesTotal} samples (${v.phase})`;
  const events: PlannedEvent[] = [];
  let restart: StallRestart | undefined;
  let message = `${what}, last advanced at ${advancedAt}`;
  if (stalled) {
    message = `${what} have not advanced since ${advancedAt} (spec.trainer.stallTimeout ${timeout})`;
    if (spec.trainer.restartOnStall && active.job) {
      message += `; evicting the pods of Job ${active.job} (spec.trainer.restartOnStall): they resume from the intra-round checkpoint`;
      restart = {
        kind: "EvictTrainer",
        round: active.index,
        job: active.job,
        event: { type: "Warning", reason: "TrainerRestarted", message },
      };
      // The replacement gets a whole stall timeout to show progress before it is evicted in turn.
      advancedAt = iso(now);
    }
    if (!wasStalled) events.push({ type: "Warning", reason: TRAINER_STALLED, message });
  }
  // Stalled until the samples advance: an eviction alone does not end it.
  const isStalled = stalled || (wasStalled && !advanced);
  const progress: RoundProgress = { ...progressShown(v), advancedAt, ...problem };
  const condition: ConditionUpdate = isStalled
    ? {
        type: TRAINER_STALLED,
        status: "True",
        reason: "NoProgress",
        message: wasStalled && !stalled ? `${what}: waiting for the restarted trainer to advance` : message,
      }
    : { type: TRAINER_STALLED, status: "False", reason: "TrainerProgressing", message };
  return { progress, condition, events, restart };
}
