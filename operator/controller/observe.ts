// Reads the world for one run: its Jobs, the round folders under spec.artifacts, the promotion
// alias and versions, the model ConfigMap, and the latest slice discovery pass. No decisions.
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import { EVAL_JSON, evalResult } from "../api/eval-result.ts";
import { ROUND_FILES } from "../api/round-layout.ts";
import { roundPlan } from "../api/round-plan.ts";
import type { RawObject } from "../kube/client.ts";
import type { Logger } from "../observability/log.ts";
import { observeSlicePoll } from "../observability/metrics.ts";
import { parseDuration } from "../api/common.ts";
import { listVersions, promotionTarget, readAlias } from "../promotion/versions.ts";
import { classifyS3Error } from "../s3/errors.ts";
import { RoundStore } from "../s3/round-store.ts";
import type { RunMemory } from "./memory.ts";
import type { ChildAccess } from "./ports.ts";
import type { FailureRecord, Observed, RoundObservation } from "./types.ts";

/** Runs a discovery pass when one is due, and keeps its result between polls. */
export async function pollSlices(run: RawObject, spec: ContinualClipRunSpec, mem: RunMemory, log: Logger): Promise<void> {
  const now = Date.now();
  if (now < mem.nextPollAt) return;
  const result = await mem.discovery.poll();
  mem.lastDiscovery = result;
  mem.nextPollAt = Date.now() + result.nextPollMs;
  if (result.newSlices.length) log.info("new slices", { slices: result.newSlices });
  for (const id of result.newSlices) mem.sliceSeenAt.set(id, now);
  if (result.errors.length === 0) {
    observeSlicePoll(run.metadata.namespace, run.metadata.name, new Date(), parseDuration(spec.source.pollInterval));
  }
}

export async function observeRounds(
  run: RawObject,
  spec: ContinualClipRunSpec,
  mem: RunMemory,
  jobs: Awaited<ReturnType<ChildAccess["roundJobs"]>>,
  log: Logger,
): Promise<Observed> {
  const store = new RoundStore(mem.storage.objects, spec.artifacts.s3);
  let listing;
  try {
    listing = await store.listRounds();
  } catch (err) {
    const p = classifyS3Error(err);
    const where = `artifacts s3://${spec.artifacts.s3.bucket}/${spec.artifacts.s3.prefix}`;
    return { problem: { reason: p.reason, message: `${where}: ${p.message}` }, discovery: mem.lastDiscovery, rounds: [] };
  }
  const rounds: RoundObservation[] = [];
  for (const [index, fileTags] of listing) {
    const files = new Set(fileTags.keys());
    if (!files.has(ROUND_FILES.plan)) continue;
    let plan = mem.plans.get(index);
    if (!plan) {
      const parsed = roundPlan.safeParse(await store.getJson(index, ROUND_FILES.plan));
      if (!parsed.success) {
        log.warn("unreadable plan; round ignored", { round: index });
        continue;
      }
      plan = parsed.data;
      mem.plans.set(index, plan);
    }
    let failure = mem.failures.get(index);
    if (!failure && files.has(ROUND_FILES.failure)) {
      failure = (await store.getJson(index, ROUND_FILES.failure)) as FailureRecord | undefined;
      if (failure) mem.failures.set(index, failure);
    }
    let evaluation = mem.evaluations.get(index);
    if (!evaluation && files.has(EVAL_JSON)) {
      const parsed = evalResult.safeParse(await store.getJson(index, EVAL_JSON));
      if (parsed.success) mem.evaluations.set(index, (evaluation = parsed.data));
      else log.warn("unreadable eval.json; round will be re-evaluated", { round: index });
    }
    rounds.push({ index, files, plan, failure, job: jobs.trainer.get(index), evaluation, evalJob: jobs.evaluator.get(index) });
  }
  // Promotion state: which rounds became versions, and where the alias points.
  let alias: Observed["alias"];
  if (spec.promotion) {
    const objects = mem.storage.objects;
    const target = promotionTarget(spec.promotion);
    const { complete } = await listVersions(objects, target);
    for (const v of complete) {
      if (v.run.uid !== run.metadata.uid) continue;
      const r = rounds.find((x) => x.index === v.round);
      if (r) r.promotedVersion = v.version;
    }
    alias = await readAlias(objects, target);
  }
  // Discovery warns about manifests that change after a round consumed them.
  mem.discovery.markConsumed(rounds.filter((r) => !r.failure && !r.job?.failure).flatMap((r) => r.plan!.newSlices));
  return { discovery: mem.lastDiscovery, rounds, alias };
}
