// The documents of a round folder other than plan.json and eval.json (api/round-layout.ts): the
// operator's own records (failed.json, verdict.json, compute.json) and what it reads of the trainer's
// (progress.json, the skipped-sample counts of train_summary.json). They are read from a bucket the
// run's author can write to, so each has a schema and is parsed with it (s3/documents.ts).
import { z } from "zod";
import { gateSpec, TRAINER_PHASES } from "./continual-clip-run.ts";
import { skippedSamples } from "./skipped-samples.ts";

/** failed.json: the operator's record of why a round failed, and what it knew then. */
export const failureRecord = z.object({
  reason: z.string().min(1),
  message: z.string(),
  generation: z.int().min(0),
  failedAt: z.string(),
  /** Valid slices when the round failed: a retry waits for one that is not among them. */
  slicesKnown: z.array(z.string()).optional(),
});
export type FailureRecord = z.infer<typeof failureRecord>;

/** One gate's result: the observed value, the threshold it was held to, and why. */
export const gateResult = z.object({
  metric: z.string(),
  observed: z.number().nullable(),
  threshold: z.number().nullable(),
  passed: z.boolean(),
  message: z.string(),
});

const metrics = z.record(z.string(), z.number());

/** A round's verdict from its eval.json and the gates of the moment it was judged. */
export const roundVerdict = z.discriminatedUnion("passed", [
  z.object({ passed: z.literal(true), metrics, gates: z.array(gateResult), message: z.string() }),
  z.object({
    passed: z.literal(false),
    /** CamelCase, for the round's reason and the Warning Event: GatesFailed or the evaluator's reason. */
    reason: z.string().min(1),
    message: z.string(),
    metrics: metrics.optional(),
    gates: z.array(gateResult).optional(),
  }),
]);

/**
 * verdict.json: a round is judged once, by the gates of that moment, for the eval.json it names:
 * that round (round, roundUri) and those encoders (sha256, eval.json's candidate.sha256). Verdicts
 * written by older operators lack the three; they are bound by evaluatedAt alone.
 */
export const verdictRecord = z.object({
  evaluatedAt: z.string(),
  judgedAt: z.string(),
  gates: z.array(gateSpec),
  verdict: roundVerdict,
  round: z.int().min(0).optional(),
  roundUri: z.string().optional(),
  sha256: z.object({ image: z.string(), text: z.string() }).optional(),
});
export type VerdictRecord = z.infer<typeof verdictRecord>;

/** compute.json: what the trainer Job spent, recorded once it finished (Jobs go after their TTL). */
export const computeRecord = z.object({
  gpuSeconds: z.number().min(0),
  startedAt: z.string().optional(),
  finishedAt: z.string().optional(),
});
export type ComputeRecord = z.infer<typeof computeRecord>;

const rate = z.number().min(0).nullable();

/**
 * progress.json: what the trainer's rank 0 is doing, written at most every 30 s and at each phase
 * change (trainer-image/src/ticclip_trainer/progress.py). Written from inside the pod, so it is
 * input: parsed with this schema and a size cap, and shown, never acted on beyond status and metrics.
 */
export const trainerProgress = z.object({
  schemaVersion: z.literal(1),
  phase: z.enum(TRAINER_PHASES),
  samplesDone: z.int().min(0),
  samplesTotal: z.int().min(1),
  steps: z.int().min(0),
  stepsTotal: z.int().min(0),
  /** Over the last few minutes of steps (null before the first step). */
  samplesPerSecond: rate,
  dataWaitShare: z.number().min(0).max(1).nullable(),
  /** Mean loss of the steps since the previous report, smoothed over reports. */
  loss: z.number().nullable(),
  lr: z.number().min(0).nullable(),
  /** Peak accelerator memory of rank 0 (null without one). */
  peakMemoryBytes: z.int().min(0).nullable(),
  /** Rank 0's skipped samples (bad images or captions) so far. */
  skippedSamples: z.object({ total: z.int().min(0), byReason: z.record(z.string(), z.int().min(0)) }),
  updatedAt: z.string().max(64),
});
export type TrainerProgress = z.infer<typeof trainerProgress>;

/** One point of train_summary.json's progressHistory: the reports of the round, decimated to 500. */
export const progressPoint = trainerProgress
  .pick({ samplesDone: true, steps: true, samplesPerSecond: true, dataWaitShare: true, loss: true, lr: true })
  .extend({ at: z.string().max(64) });
export type ProgressPoint = z.infer<typeof progressPoint>;

/**
 * train_summary.json as the operator reads it, for the controller (status: its skipped-sample
 * counts) and the report (training curves: its progressHistory); the trainer writes much more and
 * zod drops the rest. Summaries written before the data path counted skips lack skippedSamples;
 * those before progress reports (issue 26) lack progressHistory. A progressHistory not of its shape
 * is dropped, not the document: the curves are shown, never acted on, so they never stall a run.
 */
export const trainSummary = z.object({
  skippedSamples: skippedSamples.optional(),
  /** The trainer keeps at most 500 points. */
  progressHistory: z.array(progressPoint).max(1000).optional().catch(undefined),
});
export type TrainSummary = z.infer<typeof trainSummary>;
