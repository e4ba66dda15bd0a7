// Each round's training curves for the report: the progress history the trainer appends to
// train_summary.json (progressHistory, from its progress.json reports), read with the size cap and
// the schema the controller reads it with (s3/round-store.ts ROUND_DOCUMENTS, api/round-documents.ts
// trainSummary). Rounds trained before issue 26 have none and draw nothing.
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import type { ProgressPoint } from "../api/round-documents.ts";
import { ROUND_FILES, roundUri } from "../api/round-layout.ts";
import { readDocument } from "../s3/documents.ts";
import type { ObjectStore } from "../s3/object-store.ts";
import { ROUND_DOCUMENTS } from "../s3/round-store.ts";

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
    const { schema, maxBytes } = ROUND_DOCUMENTS[ROUND_FILES.summary];
    const doc = await readDocument(store, uri, maxBytes, schema);
    const points = doc && "value" in doc ? doc.value.progressHistory : undefined;
    if (points?.length) out.push({ round: r.index, points });
  }
  return out;
}
