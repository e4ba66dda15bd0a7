// The shapes the controller's pure deciders share: what was observed, what to do, what to say.
// Its own module so decide.ts and the per-phase deciders import it and not each other.
//
// A round goes through these shapes, from the world to status:
//   RoundObservation  what observe.ts read of one round folder and its Jobs (files, plan, eval, verdict)
//   RoundRecord       a round as the deciders see it: its status entry with every new slice and its replay
//   RoundStatus       status.rounds[] as written (api/continual-clip-run.ts), bounded by status-bounds.ts
//   RoundAction       one thing act.ts does for a round (write its plan, create its Job, record, promote)
//   RoundsInput, RoundsDecision  what the round state machine (rounds.ts) takes and returns
// Observed also carries the operator settings decisions depend on (evaluatorImage,
// trainerArchitectures, inProcessEvaluation): fixed for the process, passed with the observation
// so decide stays one pure function of (run, observed, now).
import type {
  ContinualClipRunSpec,
  ContinualClipRunStatus,
  ReplayStrategy,
  RoundStatus,
} from "../api/continual-clip-run.ts";
import type { EvalRequest } from "../api/eval-request.ts";
import type { EvalResult } from "../api/eval-result.ts";
import type { AliasPointer, VersionManifest } from "../api/promotion.ts";
import type { ComputeRecord, FailureRecord, TrainerProgress, VerdictRecord } from "../api/round-documents.ts";
import type { SkippedSamples } from "../api/skipped-samples.ts";
import type { RoundPlan } from "../api/round-plan.ts";
import type { ComputeStatus } from "../data/compute.ts";
import type { DiscoveryResult } from "../data/discovery.ts";
import type { Slice } from "../data/validate.ts";
import type { RoundToEvaluate } from "../evaluation/request.ts";
import type { JobObservation } from "../kube/children.ts";
import type { EventType } from "../kube/client.ts";
import type { ConfigMap, RunRef } from "../kube/objects.ts";
import type { GitModel } from "../promotion/git-target.ts";

export type { ComputeRecord, FailureRecord, JobObservation, RunRef, VerdictRecord };

/**
 * A round as the deciders see it: every new slice (plan.json's newSlices) and its replay strategy.
 * status.rounds holds a bounded copy (status-bounds.ts), which no decision reads.
 */
export type RoundRecord = RoundStatus & { slices: string[]; replay: ReplayStrategy };

export type PlannedEvent = { type: EventType; reason: string; message: string };

export type Problem = { reason: string; message: string };

/**
 * What decisions need of a round's plan.json. Memory keeps this, not the plan: a plan lists every
 * shard of every replayed slice, which grows as rounds squared under CumulativeAll.
 */
export type PlanSummary = Pick<RoundPlan, "round" | "newSlices" | "replay" | "run"> & {
  model: Pick<RoundPlan["model"], "initCheckpoint">;
  data: Pick<RoundPlan["data"], "samples">;
};

export type RoundObservation = {
  index: number;
  files: ReadonlySet<string>;
  plan?: PlanSummary | undefined;
  /** Why plan.json could not be used (truncated, not a RoundPlan): the round folder is stuck. */
  planProblem?: string | undefined;
  failure?: FailureRecord | undefined;
  job?: JobObservation | undefined;
  /** eval.json, once the evaluator wrote it (only its time once verdict.json judged it). */
  evaluation?: ObservedEvaluation | undefined;
  evalJob?: JobObservation | undefined;
  /** The immutable promoted version made from this round, if any. */
  promotedVersion?: number | undefined;
  /** compute.json: what the trainer Job spent, recorded once it finished (Jobs go after their TTL). */
  compute?: ComputeRecord | undefined;
  /** train_summary.json's skipped-sample counts, read once the round trained. */
  skipped?: SkippedSamples | undefined;
  verdict?: VerdictRecord | undefined;
  /**
   * sha256 of the round's encoders as they are now (undefined: the file is absent), read for rounds
   * whose eval.json is to be judged or whose verdict is to be promoted: an evaluation counts only
   * for the bytes it scored (candidate.sha256).
   */
  digests?: { image?: string | undefined; text?: string | undefined } | undefined;
};

/** eval.json as decisions see it: whole until judged, then only when it was evaluated. */
export type ObservedEvaluation = EvalResult | { judged: true; evaluatedAt: string };

/** The model ConfigMap as it is in the cluster (undefined: absent). */
export type ObservedConfigMap = { ownerUids: string[]; data: Record<string, string> };

/** What the reconciler saw of the world for one run. */
export type Observed = {
  /** Set when S3 or its credentials could not be used at all this time. */
  problem?: Problem | undefined;
  /** The latest discovery pass (kept between polls). */
  discovery?: DiscoveryResult | undefined;
  /** Rounds under the artifacts prefix, with their Jobs. */
  rounds: RoundObservation[];
  /** The alias pointer in S3 (spec.promotion), or why it cannot be read. */
  alias?: AliasPointer | { invalid: string } | undefined;
  /** Complete versions under spec.promotion (version.json written), oldest first; undefined: not read. */
  versions?: VersionManifest[] | undefined;
  /** spec.promotion.configMapName as it is now. */
  configMap?: ObservedConfigMap | undefined;
  evaluatorImage?: string | undefined;
  /** What this process last learned of spec.promotion.git (memory; undefined after a restart). */
  git?: GitState | undefined;
  /** Architectures the trainer image ships (operator configuration); undefined: not checked. */
  trainerArchitectures?: readonly string[] | undefined;
  /** Whether the operator's administrator allows in-process evaluation; undefined: not checked. */
  inProcessEvaluation?: boolean | undefined;
  /** progress.json of the training round, as last read (read at most once per progress interval). */
  progress?: ObservedProgress | undefined;
};

/** The trainer's progress.json of a training round (memory keeps it between reads), or why it is unusable. */
export type ObservedProgress = { round: number; value?: TrainerProgress | undefined; problem?: string | undefined };

export type RoundAction =
  | { kind: "WritePlan"; round: number; plan: RoundPlan }
  | {
      kind: "CreateJob";
      round: number;
      job: Record<string, any>;
      service?: Record<string, any> | undefined;
      /** An evaluation Job's request, written to the round's eval-request.json before the Job. */
      evalRequest?: EvalRequest | undefined;
      event: PlannedEvent;
    }
  | { kind: "RecordCompute"; round: number; record: ComputeRecord }
  /** replace: the recorded verdict is of an older eval.json. */
  | { kind: "RecordVerdict"; round: number; record: VerdictRecord; replace: boolean }
  | {
      kind: "RecordFailure";
      round: number;
      record: FailureRecord;
      event: PlannedEvent;
      sliceFailed?: PlannedEvent | undefined;
    }
  /**
   * eval.json written by the operator for an evaluation Job that failed without writing one, so the
   * round stays Rejected after the Job's TTL instead of being evaluated again. replace: the eval.json
   * there is a refused one (another round's).
   */
  | { kind: "RecordEvaluationFailure"; round: number; result: EvalResult; replace: boolean }
  /** The same request an evaluation Job would get, scored in the operator process. */
  | { kind: "EvaluateInProcess"; round: number; request: RoundToEvaluate; event?: PlannedEvent | undefined }
  /** The pods of a stalled trainer Job, evicted so that their replacements resume (controller/progress.ts). */
  | { kind: "EvictTrainer"; round: number; job: string; event: PlannedEvent }
  /** evaluatedAt: the eval.json judged; act checks it is still the one in the folder before copying. */
  | { kind: "Promote"; round: number; metrics: Record<string, number>; evaluatedAt: string };

export type AliasAction =
  /** Points the alias at a complete version (pinned: spec.promotion.pinVersion holds it there). */
  | { kind: "PointAlias"; version: number; pinned: boolean; event: PlannedEvent }
  | { kind: "ApplyConfigMap"; configMap: ConfigMap };

/** Git follows the alias: make the files of spec.promotion.git say model (git.ts, git-sync.ts). */
export type GitAction = { kind: "SyncGit"; key: string; model: GitModel; message: string };

/**
 * The last sync of spec.promotion.git by this process. key: what it synced (the target and the
 * alias pointer); failures: consecutive failed syncs of that key (the retry backoff).
 */
export type GitState = { key: string; at: number } & (
  | { ok: true; commit?: string | undefined; head: string; branch: string }
  | { ok: false; reason: string; field: string; message: string; failures: number }
);

export type Action = RoundAction | AliasAction | GitAction;

export type Decision = {
  /** The status to write, or undefined when the current one is already right. */
  status: ContinualClipRunStatus | undefined;
  actions: Action[];
  events: PlannedEvent[];
  outcome: "done" | "stalled";
  spec?: ContinualClipRunSpec | undefined;
};

export type Promoted = ContinualClipRunStatus["promoted"];

export type RoundsInput = {
  run: RunRef;
  spec: ContinualClipRunSpec;
  /** Valid slices in slice order, from a complete (error-free) discovery pass; undefined if none yet. */
  slices: Slice[] | undefined;
  rounds: RoundObservation[];
  /** Previous status.rounds, to keep facts whose source is gone (GPU-seconds after Job TTL). */
  previous: RoundStatus[] | undefined;
  /** status.promoted, for warmStartFrom: LastPromoted and maxRegression gates. */
  promoted?: { version: number; uri: string; metrics?: Record<string, number> | undefined } | undefined;
  promotedCheckpoint?: string | undefined;
  /** Image for evaluation Jobs (the operator's own); unset evaluates in the operator process. */
  evaluatorImage?: string | undefined;
  /** The run's annotations (Manual promotion approvals). */
  annotations?: Record<string, string> | undefined;
  now: Date;
};

export type FailedSlice = { id: string; reason: string; attempts: number };

export type RoundsDecision = {
  actions: RoundAction[];
  rounds: RoundRecord[];
  current: RoundRecord | undefined;
  compute: ComputeStatus;
  /** Slices trained on by a Trained round, or in a running one. */
  consumed: string[];
  /** Slices that sort before an already covered slice: ignored, since rounds follow time order. */
  late: string[];
  /** Transition events of rounds (rejections). */
  events: PlannedEvent[];
  /** Slices given up on after spec.strategy.maxAttemptsPerSlice failed rounds. */
  failedSlices: FailedSlice[];
  /** Why no new round starts although data is waiting (suspended, failed round, plan problem). */
  waiting?: Problem | undefined;
  planProblem?: PlannedEvent | undefined;
};
