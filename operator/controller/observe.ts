// Reads the world for one run: its Jobs, the round folders under spec.artifacts, the promotion
// alias and versions, the model ConfigMap, and the latest slice discovery pass. No decisions.
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import type { VersionManifest } from "../api/promotion.ts";
import { EVAL_JSON } from "../api/eval-result.ts";
import { ROUND_FILES, roundUri } from "../api/round-layout.ts";
import type { RoundPlan } from "../api/round-plan.ts";
import type { RawObject } from "../kube/client.ts";
import type { Logger } from "../observability/log.ts";
import { observeSlicePoll } from "../observability/metrics.ts";
import { parseDuration, withSlash } from "../api/common.ts";
import {
  aliasUri,
  digestOf,
  EVALUATED_FILES,
  isSameRun,
  listVersions,
  promotionTarget,
  readAlias,
} from "../promotion/versions.ts";
import { inPool } from "../s3/client.ts";
import { connectionFromSecret } from "../s3/credentials.ts";
import { classifyS3Error } from "../s3/errors.ts";
import type { DocumentRead } from "../s3/documents.ts";
import { RoundStore, type RoundDocument, type RoundDocumentValue, type RoundListing } from "../s3/round-store.ts";
import { DIGEST_SUFFIX, loadDocumentCache } from "./document-cache.ts";
import { memoryFor, type RunMemory } from "./memory.ts";
import type { ChildAccess, StorageFactory } from "./ports.ts";
import { phaseOf } from "./round-status.ts";
import type {
  Observed,
  ObservedEvaluation,
  ObservedProgress,
  PlanSummary,
  Problem,
  RoundObservation,
} from "./types.ts";

/** The fields of a plan that decisions use (PlanSummary), copied out so the full plan can be freed. */
export function summarizePlan(plan: RoundPlan): PlanSummary {
  return {
    run: { ...plan.run },
    round: plan.round,
    newSlices: [...plan.newSlices],
    replay: plan.replay,
    model: { initCheckpoint: plan.model.initCheckpoint },
    data: { samples: plan.data.samples },
  };
}

/**
 * sha256 of the encoders of the rounds whose evaluation is to be judged (eval.json not yet judged)
 * or whose verdict is to be promoted (the newest passing round not yet promoted): an evaluation
 * counts only for the bytes it scored. Each file is hashed once per ETag (streamed), remembered
 * with the round documents, and so persisted in the document cache.
 */
async function readDigests(
  rounds: RoundObservation[],
  spec: ContinualClipRunSpec,
  store: RoundStore,
  listing: RoundListing,
  mem: RunMemory,
  documents: Map<string, { etag: string; value: unknown }>,
): Promise<void> {
  const newestPassed = Math.max(-1, ...rounds.filter((r) => r.verdict?.verdict.passed).map((r) => r.index));
  const wanted = rounds.filter(
    (r) =>
      r.files.has(ROUND_FILES.success) &&
      r.evaluation !== undefined &&
      (!("judged" in r.evaluation)
        ? r.evaluation.status === "Succeeded"
        : spec.promotion !== undefined && r.index === newestPassed && r.promotedVersion === undefined),
  );
  const digest = async (index: number, file: string): Promise<string | undefined> => {
    const etag = listing.get(index)?.get(file);
    if (etag === undefined) return undefined;
    const key = store.uri(index, file) + DIGEST_SUFFIX;
    const hit = mem.documents.get(key) ?? documents.get(key);
    if (hit && hit.etag === etag && typeof hit.value === "string") {
      documents.set(key, hit);
      return hit.value;
    }
    const value = await digestOf(mem.storage.objects, store.uri(index, file));
    if (value !== undefined) {
      documents.set(key, { etag, value });
      mem.documentsChanged = true;
    }
    return value;
  };
  await inPool(wanted, ROUND_READS, async (r) => {
    r.digests = {
      image: await digest(r.index, EVALUATED_FILES.image),
      text: await digest(r.index, EVALUATED_FILES.text),
    };
  });
}

/** The trainer writes progress.json at most this often (trainer-image progress.py); the operator reads it no more often. */
export const PROGRESS_INTERVAL_MS = 30_000;

/**
 * progress.json of the round in training, if any: read when it is new to this process, or when its
 * ETag changed and the last read is at least `intervalMs` old; otherwise what memory holds. A run
 * with no round in training reads nothing. A read that fails or a document that is not of its shape
 * is reported as the round's progress problem (status), never as the run's: progress is shown, not acted on.
 */
export async function observeProgress(
  spec: ContinualClipRunSpec,
  mem: RunMemory,
  rounds: readonly RoundObservation[],
  intervalMs: number,
  now: number,
  log: Logger,
): Promise<ObservedProgress | undefined> {
  const training = rounds.find((r) => phaseOf(r).phase === "Training" && r.files.has(ROUND_FILES.progress));
  if (!training) {
    mem.progress = undefined;
    return undefined;
  }
  const etag = mem.listing?.rounds.get(training.index)?.get(ROUND_FILES.progress);
  const last = mem.progress?.round === training.index ? mem.progress : undefined;
  if (last && (now - last.readAt < intervalMs || (etag !== undefined && etag === last.etag))) {
    return { round: last.round, value: last.value };
  }
  const store = new RoundStore(mem.storage.objects, spec.artifacts.s3);
  let doc: DocumentRead<RoundDocumentValue<typeof ROUND_FILES.progress>>;
  try {
    doc = await store.readDocument(training.index, ROUND_FILES.progress);
  } catch (err) {
    const p = classifyS3Error(err);
    log.warn("progress.json not read", { round: training.index, error: p.message });
    return {
      round: training.index,
      value: last?.value,
      problem: `${store.uri(training.index, ROUND_FILES.progress)}: ${p.reason}: ${p.message}`,
    };
  }
  const problem =
    doc && "invalid" in doc ? `${store.uri(training.index, ROUND_FILES.progress)}: ${doc.invalid}` : undefined;
  const value = doc && "value" in doc ? doc.value : last?.value;
  mem.progress = { round: training.index, value, etag, readAt: now };
  return { round: training.index, value, ...(problem ? { problem } : {}) };
}

/** Runs a discovery pass when one is due, and keeps its result between polls. Returns whether it ran. */
export async function pollSlices(
  run: RawObject,
  spec: ContinualClipRunSpec,
  mem: RunMemory,
  log: Logger,
): Promise<boolean> {
  const now = Date.now();
  if (now < mem.nextPollAt) return false;
  const notifications = mem.notifications;
  const result = await mem.discovery.poll();
  mem.lastDiscovery = result;
  // A notification that arrived during the pass asks for the next one now, not after the interval.
  mem.nextPollAt = mem.notifications !== notifications ? 0 : Date.now() + result.nextPollMs;
  if (result.newSlices.length) log.info("new slices", { slices: result.newSlices });
  for (const id of result.newSlices) mem.sliceSeenAt.set(id, now);
  if (result.errors.length === 0) {
    observeSlicePoll(run.metadata.namespace, run.metadata.name, new Date(), parseDuration(spec.source.pollInterval));
  }
  return true;
}

type RoundJobs = Awaited<ReturnType<ChildAccess["roundJobs"]>>;

/** Whether status shows a round in progress (its folder changes without the run or a Job changing). */
export function roundInProgress(run: RawObject): boolean {
  return (run.status as { currentRound?: unknown } | undefined)?.currentRound !== undefined;
}

/** Round folders whose documents are read at once. */
const ROUND_READS = 8;

/** Promotion state read at most this long ago is reused (memory.ts). */
export const PROMOTION_TTL_MS = 5 * 60_000;

/**
 * What a reused listing was read under: the run's generation and what its Jobs show. A changed spec
 * or any Job change (a trainer or evaluator finishing writes to S3 first) makes the next reconcile
 * list again.
 */
export function listingKey(run: RawObject, jobs: RoundJobs): string {
  return JSON.stringify([run.metadata.generation, [...jobs.trainer], [...jobs.evaluator]]);
}

/**
 * The rounds under spec.artifacts with their documents, Jobs and promotion state. The listing is
 * read again when `relist` (a poll ran, or a round is active) or when listingKey changed; otherwise
 * the previous one is reused, and documents come from memory by ETag, so nothing is read from S3.
 */
export async function observeRounds(
  run: RawObject,
  spec: ContinualClipRunSpec,
  mem: RunMemory,
  jobs: RoundJobs,
  log: Logger,
  relist = true,
): Promise<Observed> {
  const store = new RoundStore(mem.storage.objects, spec.artifacts.s3);
  const key = listingKey(run, jobs);
  let listing: RoundListing;
  try {
    listing = !relist && mem.listing?.key === key ? mem.listing.rounds : await store.listRounds();
    mem.listing = { key, rounds: listing };
    // Once S3 answered: a new process seeds its memory from the persisted cache (one GET).
    await loadDocumentCache(mem, spec.artifacts.s3, listing.size, log);
  } catch (err) {
    mem.listing = undefined;
    const where = `spec.artifacts.s3 (s3://${spec.artifacts.s3.bucket}/${spec.artifacts.s3.prefix})`;
    return { problem: s3Problem(where, err), discovery: mem.lastDiscovery, rounds: [] };
  }
  const documents = new RoundDocuments(store, listing, mem);
  let rounds: RoundObservation[];
  try {
    // Round folders are read ROUND_READS at a time: after a restart every document of every round
    // is read once, and one at a time that was most of the catch-up (docs/scale.md).
    rounds = (
      await inPool([...listing], ROUND_READS, ([index, tags]) => observeRound(documents, jobs, log, index, tags))
    ).filter((r): r is RoundObservation => r !== undefined);
  } catch (err) {
    // One document could not be read (a timeout, a reset): the run waits with the key in its status.
    const p = classifyS3Error(err);
    return { problem: { reason: p.reason, message: p.message }, discovery: mem.lastDiscovery, rounds: [] };
  }
  const promotion = spec.promotion
    ? await observePromotion(run, spec.promotion, spec.artifacts.s3, mem, key, rounds, documents.invalid)
    : { alias: undefined, versions: undefined };
  if ("problem" in promotion) return { problem: promotion.problem, discovery: mem.lastDiscovery, rounds };
  const { alias, versions } = promotion;
  await readDigests(rounds, spec, store, listing, mem, documents.kept);
  if (documents.kept.size !== mem.documents.size) mem.documentsChanged = true;
  mem.documents = documents.kept;
  const invalid = documents.invalid;
  if (invalid.length) {
    // Documents in the run's own storage that cannot be trusted: the run acts on nothing until
    // they are fixed or removed (its status names them); other runs are not affected.
    const more = invalid.length > 3 ? `; and ${invalid.length - 3} more` : "";
    const message = `${invalid.slice(0, 3).join("; ")}${more}`;
    return {
      problem: { reason: "InvalidDocument", message },
      discovery: mem.lastDiscovery,
      rounds,
      alias,
      ...(versions ? { versions } : {}),
    };
  }
  // Discovery warns about manifests that change after a round consumed them.
  mem.discovery.markConsumed(
    rounds.filter((r) => !r.failure && !r.job?.failure).flatMap((r) => r.plan?.newSlices ?? []),
  );
  return { discovery: mem.lastDiscovery, rounds, alias, ...(versions ? { versions } : {}) };
}

/** An S3 failure at `where` (the spec field and its URI) as the run's problem. */
function s3Problem(where: string, err: unknown): Problem {
  const p = classifyS3Error(err);
  return { reason: p.reason, message: `${where}: ${p.message}` };
}

/**
 * The round documents of one observation. Each is trusted only while the listing shows the same
 * object: keyed by URI, checked by ETag. Each is read within its size limit and parsed with its
 * schema (s3/round-store.ts); `use` turns it into what memory keeps, or undefined for one that does
 * not belong to this round. `kept` is what memory holds after this observation; `invalid`, the
 * documents a run's author can write to that are too large or not of their shape, by key.
 */
class RoundDocuments {
  readonly kept = new Map<string, { etag: string; value: unknown }>();
  readonly invalid: string[] = [];
  readonly store: RoundStore;
  readonly #listing: RoundListing;
  readonly #mem: RunMemory;

  constructor(store: RoundStore, listing: RoundListing, mem: RunMemory) {
    this.store = store;
    this.#listing = listing;
    this.#mem = mem;
  }

  /** The ETags of a round folder's files, as listed. */
  tags(index: number): Map<string, string | undefined> | undefined {
    return this.#listing.get(index);
  }

  /** `dependsOn`: another document's ETag the value also depends on (eval.json's judged state on verdict.json's). */
  async read<F extends RoundDocument, T>(
    index: number,
    file: F,
    use: (doc: RoundDocumentValue<F>) => T | undefined,
    dependsOn?: string,
    onInvalid: (problem: string) => void = (problem) =>
      this.invalid.push(`spec.artifacts.s3: ${this.store.uri(index, file)}: ${problem}`),
  ): Promise<T | undefined> {
    const uri = this.store.uri(index, file);
    const tag = this.#listing.get(index)?.get(file);
    const etag = tag === undefined || dependsOn === undefined ? tag : `${tag} ${dependsOn}`;
    const hit = this.#mem.documents.get(uri);
    if (hit && etag !== undefined && hit.etag === etag) {
      this.kept.set(uri, hit);
      return hit.value as T;
    }
    const doc = await this.store.readDocument(index, file);
    if (doc && "invalid" in doc) {
      onInvalid(doc.invalid);
      return undefined;
    }
    const value = doc && use(doc.value);
    if (value !== undefined && etag !== undefined) {
      this.kept.set(uri, { etag, value });
      this.#mem.documentsChanged = true;
    }
    return value;
  }
}

/** One round folder: its plan, failure, verdict, evaluation, compute and skipped samples, with its Jobs. */
async function observeRound(
  documents: RoundDocuments,
  jobs: RoundJobs,
  log: Logger,
  index: number,
  fileTags: Map<string, string | undefined>,
): Promise<RoundObservation | undefined> {
  const files = new Set(fileTags.keys());
  if (!files.has(ROUND_FILES.plan)) return undefined;
  // An unusable plan holds the rounds after it (rounds.ts, RoundPlanUnreadable), not the whole run.
  let planProblem = "unreadable";
  const plan = await documents.read(index, ROUND_FILES.plan, summarizePlan, undefined, (p) => {
    planProblem = p;
  });
  if (!plan) {
    log.warn("unreadable plan", { round: index, problem: planProblem });
    return { index, files, planProblem };
  }
  const failure = files.has(ROUND_FILES.failure)
    ? await documents.read(index, ROUND_FILES.failure, (f) => f)
    : undefined;
  const here = documents.store.uri(index, "");
  const names = (doc: { round?: unknown; roundUri?: unknown }) =>
    (doc.round === undefined || doc.round === index) &&
    (doc.roundUri === undefined || withSlash(String(doc.roundUri)) === here);
  // A verdict.json that names another round (copied here) is no verdict of this one.
  const verdict = files.has(ROUND_FILES.verdict)
    ? await documents.read(index, ROUND_FILES.verdict, (v) => (names(v) ? v : undefined))
    : undefined;
  // A judged evaluation is remembered by its time only: verdict.json holds what status shows, and
  // eval.json's TiC matrix grows as rounds squared. Its cache entry depends on verdict.json too.
  const evaluation = files.has(EVAL_JSON)
    ? await documents.read(
        index,
        EVAL_JSON,
        (ev): ObservedEvaluation => {
          // Only an eval.json naming this round may be remembered as judged; any other is kept
          // whole, for decide to refuse (after-training.ts, evaluationMismatch).
          const bound = ev.round === index && withSlash(ev.roundUri) === here;
          return bound && verdict?.evaluatedAt === ev.evaluatedAt ? { judged: true, evaluatedAt: ev.evaluatedAt } : ev;
        },
        fileTags.get(ROUND_FILES.verdict) ?? "",
      )
    : undefined;
  const compute = files.has(ROUND_FILES.compute)
    ? await documents.read(index, ROUND_FILES.compute, (c) => c)
    : undefined;
  // Read once per trained round (then remembered by ETag): status shows its skipped samples. Memory
  // keeps only them, not the report's progressHistory.
  const summary =
    files.has(ROUND_FILES.success) && files.has(ROUND_FILES.summary)
      ? await documents.read(index, ROUND_FILES.summary, (s) => ({ skippedSamples: s.skippedSamples }))
      : undefined;
  return {
    index,
    files,
    plan,
    failure,
    compute,
    skipped: summary?.skippedSamples,
    verdict,
    job: jobs.trainer.get(index),
    evaluation,
    evalJob: jobs.evaluator.get(index),
  };
}

/**
 * Promotion state: the complete versions and where the alias points (reused from memory for
 * PROMOTION_TTL_MS while nothing changed and no round is in progress), and which rounds became
 * versions (set on the rounds). Invalid promotion documents are added to `invalid`.
 */
async function observePromotion(
  run: RawObject,
  promotion: NonNullable<ContinualClipRunSpec["promotion"]>,
  artifacts: ContinualClipRunSpec["artifacts"]["s3"],
  mem: RunMemory,
  key: string,
  rounds: RoundObservation[],
  invalid: string[],
): Promise<Pick<Observed, "alias" | "versions"> | { problem: Problem }> {
  const objects = mem.storage.objects;
  const target = promotionTarget(promotion);
  let complete: VersionManifest[];
  let alias: Observed["alias"];
  const cached = mem.promotion;
  try {
    if (cached && cached.key === key && !roundInProgress(run) && Date.now() - cached.readAt < PROMOTION_TTL_MS) {
      ({ complete, alias } = cached);
    } else {
      const readAt = Date.now();
      const listed = await listVersions(objects, target, mem.versions);
      complete = listed.complete;
      alias = await readAlias(objects, target);
      invalid.push(...listed.invalid.map((v) => `spec.promotion.s3: ${v}`));
      // Reused only while it holds nothing to report (a bad document is read again until fixed).
      mem.promotion = listed.invalid.length ? undefined : { key, readAt, complete, alias };
    }
  } catch (err) {
    mem.promotion = undefined;
    return { problem: s3Problem(`spec.promotion.s3 (s3://${target.bucket}/${target.prefix})`, err) };
  }
  if (alias && "invalid" in alias) invalid.push(`spec.promotion.alias: ${aliasUri(target)}: ${alias.invalid}`);
  // A version belongs to a round by where it was copied from, not by its number: a round 0 under
  // another artifacts prefix, or a round folder redone, is not the promoted one.
  for (const v of complete) {
    if (!isSameRun(v.run, run.metadata)) continue;
    const r = rounds.find((x) => roundUri(artifacts, x.index) === v.sourceUri);
    if (r) r.promotedVersion = v.version;
  }
  return { alias, versions: complete };
}

/** A run that would need the operator's own identity while --allow-default-credentials is off. */
export const DEFAULT_CREDENTIALS_REFUSED = {
  reason: "CredentialsSecretRequired",
  message:
    "spec.source.s3.credentialsSecretRef: required by this operator: it does not lend its own cloud identity to runs (--allow-default-credentials is off); name a Secret of the run's namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
} as const;

/** What observing a run needs of the reconciler's dependencies (reconcile.ts ReconcilerDeps). */
export type ObserveDeps = {
  children: ChildAccess;
  storage: StorageFactory;
  now: () => Date;
  allowDefaultCredentials?: boolean | undefined;
  sliceUnreadableAfterMs?: number | undefined;
  evaluatorImage?: string | undefined;
  trainerArchitectures?: readonly string[] | undefined;
  inProcessEvaluation?: boolean | undefined;
  /** How often a training round's progress.json is read at most (--progress-interval). */
  progressIntervalMs?: number | undefined;
};

/**
 * Everything decide needs to know of one run's world: its S3 connection (from its Secret), its
 * Jobs, slices and rounds, its model ConfigMap, and the operator's settings that bound it. The
 * run's memory (memory.ts) is created or updated in `memory`.
 */
export async function observeRun(
  deps: ObserveDeps,
  memory: Map<string, RunMemory>,
  key: string,
  run: RawObject,
  spec: ContinualClipRunSpec,
  log: Logger,
): Promise<Observed> {
  const { namespace } = run.metadata;
  const { children } = deps;
  const src = spec.source.s3;
  if (!src.credentialsSecretRef && !deps.allowDefaultCredentials) {
    return { problem: { ...DEFAULT_CREDENTIALS_REFUSED }, rounds: [] };
  }
  const secret = src.credentialsSecretRef
    ? await children.secretData(namespace, src.credentialsSecretRef.name)
    : undefined;
  const conn = connectionFromSecret(src, secret);
  // Jobs first, then S3: a Job seen complete has already written its _SUCCESS marker.
  const jobs = await children.roundJobs(namespace, { name: run.metadata.name, uid: run.metadata.uid });
  if (!conn.ok) return { problem: { reason: conn.reason, message: conn.message }, rounds: [] };

  const mem = memoryFor(memory.get(key), spec, conn.connection, deps.storage, {
    unreadableAfterMs: deps.sliceUnreadableAfterMs,
    now: () => deps.now().getTime(),
  });
  memory.set(key, mem);
  const polled = await pollSlices(run, spec, mem, log);
  // At most one artifacts listing per poll interval while nothing happens (docs/scale.md).
  const observed = await observeRounds(run, spec, mem, jobs, log, polled || roundInProgress(run));
  if (!observed.problem) {
    const every = deps.progressIntervalMs ?? PROGRESS_INTERVAL_MS;
    observed.progress = await observeProgress(spec, mem, observed.rounds, every, deps.now().getTime(), log);
  }
  const configMapName = spec.promotion?.configMapName;
  if (configMapName && !observed.problem) observed.configMap = await children.readConfigMap(namespace, configMapName);
  return {
    ...observed,
    evaluatorImage: deps.evaluatorImage,
    trainerArchitectures: deps.trainerArchitectures,
    git: mem.git,
    inProcessEvaluation: deps.inProcessEvaluation ?? !deps.evaluatorImage,
  };
}
