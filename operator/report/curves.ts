// Each round's training curves for the report: the progress history the trainer appends to
// train_summary.json (progressHistory, from its progress.json reports), read with a size cap and a
// schema like every round document. Rounds trained before issue 26 have none and draw nothing.
import { z } from "zod";
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import { progressPoint, type ProgressPoint } from "../api/round-documents.ts";
import { ROUND_FILES, roundUri } from "../api/round-layout.ts";
import { DOCUMENT_LIMITS, readDocument } from "../s3/documents.ts";
import type { ObjectStore } from "../s3/object-store.ts";

/** The part of train_summary.json the report reads (the trainer keeps at most 500 points). */
const summaryCurves = z.object({ progressHistory: z.array(progressPoint).max(1000).default([]) });

export type RoundCurve = { round: number; points: ProgressPoint[] };

/** progressHistory of each round that has a train_summary.json; a missing or unusable one is skipped. */
export async function readTrainingCurves(
  store: Pick<ObjectStore, "get">,
  spec: Pick<ContinualClipRunSpec, "artifacts">,
  rounds: readonly { index: number }[],
): Promise<RoundCurve[]> {
  const out: RoundCurve[] = [];
  for (const r of rounds) {
    const uri = `${roundUri(spec.artifacts.s3, r.index)}${ROUND_FILES.summary}`;
    const doc = await readDocument(store, uri, DOCUMENT_LIMITS.small, summaryCurves);
    if (doc && "value" in doc && doc.value.progressHistory.length)
      out.push({ round: r.index, points: doc.value.progressHistory });
  }
  return out;
}
