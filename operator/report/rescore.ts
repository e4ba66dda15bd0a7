// The full TiC matrix of a run, on demand: every trained round re-scored on every slice's held-out
// pack (TiC-CLIP's T x T matrix: ID on the diagonal, backward below, forward above). The
// operator's per-round evaluation scores a round only up to its newest slice plus the next one;
// this re-runs the evaluator's own evaluateRound on all packs and writes nothing but
// <artifacts.prefix>tic-matrix.json.
import { z } from "zod";
import { compareSliceIds } from "../api/slice-manifest.ts";
import type { ContinualClipRunSpec, RoundStatus } from "../api/continual-clip-run.ts";
import { ticMatrixSchema } from "../api/eval-result.ts";
import { ROUND_FILES, roundUri } from "../api/round-layout.ts";
import { roundPlan } from "../api/round-plan.ts";
import { TRAINED } from "../controller/round-status.ts";
import { evaluateRound } from "../evaluation/evaluate.ts";
import { retrievalPacks, sourceUri } from "../evaluation/request.ts";
import { ticMatrix, type TicMatrix, type TicRow } from "../evaluation/tic.ts";
import { DOCUMENT_LIMITS, readDocument } from "../s3/documents.ts";
import type { ObjectStore } from "../s3/object-store.ts";

export const TIC_MATRIX_JSON = "tic-matrix.json";

const packInfo = z.object({
  sliceId: z.string(),
  packUri: z.string(),
  images: z.int().min(1),
  texts: z.int().min(1),
  /** Mean R@1 of a random ranking on this pack, as the evaluator reports it (when it does). */
  chanceMeanRecallAt1: z.number().min(0).max(1).optional(),
});

export const ticMatrixFile = z.object({
  schemaVersion: z.literal(1),
  run: z.object({ namespace: z.string(), name: z.string() }),
  generatedAt: z.string(),
  matrix: ticMatrixSchema,
  packs: z.array(packInfo),
  /** Mean over the packs of their chance mean R@1 (null when the evaluator reports none). */
  chance: z.number().min(0).max(1).nullable(),
  /** Rounds that could not be scored, with the evaluator's reason. */
  skipped: z.array(z.object({ round: z.int().min(0), reason: z.string(), message: z.string() })),
});
export type TicMatrixFile = z.infer<typeof ticMatrixFile>;

export type RescoreInput = {
  run: { namespace: string; name: string };
  spec: Pick<ContinualClipRunSpec, "source" | "artifacts">;
  /**
   * status.rounds: trained rounds are scored, others are ignored. An entry whose slice list status
   * bounded (sliceCount above its slices, or a compact entry) gets its new slices from plan.json.
   */
  rounds: readonly (Pick<RoundStatus, "index" | "slices" | "sliceCount" | "checkpoint"> &
    Partial<Pick<RoundStatus, "phase">>)[];
  /** Slices to score on; defaults to every slice some round trained on. */
  slices?: readonly string[];
  now: string;
  intraOpNumThreads?: number;
};

export const matrixUri = (spec: Pick<ContinualClipRunSpec, "artifacts">) =>
  `s3://${spec.artifacts.s3.bucket}/${spec.artifacts.s3.prefix}${TIC_MATRIX_JSON}`;

/** A round's new slices: from status when it lists them all, else from the round's plan.json. */
async function roundSlices(
  store: ObjectStore,
  spec: Pick<ContinualClipRunSpec, "artifacts">,
  r: RescoreInput["rounds"][number],
): Promise<string[]> {
  if (r.slices && (r.sliceCount === undefined || r.sliceCount === r.slices.length)) return r.slices;
  const uri = `${roundUri(spec.artifacts.s3, r.index)}${ROUND_FILES.plan}`;
  const read = await readDocument(store, uri, DOCUMENT_LIMITS.plan, roundPlan);
  if (!read) throw new Error(`${uri} is missing: round ${r.index}'s slices are not all in status`);
  if ("invalid" in read) throw new Error(`${uri}: ${read.invalid}`);
  return read.value.newSlices;
}

/** Scores every trained round on every slice's pack and writes tic-matrix.json beside rounds/. */
export async function rescoreRun(store: ObjectStore, input: RescoreInput): Promise<TicMatrixFile> {
  const trained = await Promise.all(
    input.rounds
      .filter((r) => r.checkpoint || (r.phase && TRAINED.has(r.phase)))
      .sort((a, b) => a.index - b.index)
      .map(async (r) => ({ index: r.index, slices: await roundSlices(store, input.spec, r) })),
  );
  const slices = [...new Set(input.slices ?? trained.flatMap((r) => r.slices))].sort(compareSliceIds);
  const packs = await retrievalPacks(store, sourceUri(input.spec), slices);
  const rows: TicRow[] = [];
  const skipped: TicMatrixFile["skipped"] = [];
  const sizes = new Map<string, { images: number; texts: number; chanceMeanRecallAt1?: number }>();
  for (const r of trained) {
    const res = await evaluateRound(store, {
      round: r.index,
      roundUri: roundUri(input.spec.artifacts.s3, r.index),
      roundSlices: r.slices,
      retrieval: packs,
      zeroShot: [],
      k: [1],
      previousRows: [],
      now: input.now,
      ...(input.intraOpNumThreads ? { intraOpNumThreads: input.intraOpNumThreads } : {}),
    });
    if (res.status !== "Succeeded") {
      skipped.push({ round: r.index, reason: res.reason, message: res.message });
      continue;
    }
    for (const s of res.candidate.retrieval) {
      // eval.json written by older evaluators has no chance level.
      const chance = s.chance?.meanRecallAt1;
      sizes.set(s.sliceId, {
        images: s.images,
        texts: s.texts,
        ...(chance === undefined ? {} : { chanceMeanRecallAt1: chance }),
      });
    }
    const cells = Object.fromEntries(res.candidate.retrieval.map((s) => [s.sliceId, s.metrics.meanRecallAt1!]));
    rows.push({ round: r.index, roundSlices: r.slices, cells });
  }
  const scored = packs.filter((p) => sizes.has(p.sliceId)).map((p) => ({ ...p, ...sizes.get(p.sliceId)! }));
  const chances = scored.map((p) => p.chanceMeanRecallAt1).filter((c): c is number => c !== undefined);
  const file: TicMatrixFile = {
    schemaVersion: 1,
    run: input.run,
    generatedAt: input.now,
    matrix: ticMatrix(rows),
    packs: scored,
    chance:
      chances.length === scored.length && chances.length > 0
        ? chances.reduce((a, b) => a + b, 0) / chances.length
        : null,
    skipped,
  };
  await store.put(matrixUri(input.spec), JSON.stringify(ticMatrixFile.parse(file), null, 2), "application/json");
  return file;
}

export type { TicMatrix };
