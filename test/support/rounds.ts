// Documents of a finished round (plan.json, eval.json) and the files a promotion copies, for tests
// that start from rounds already trained instead of training them.
import { createHash } from "node:crypto";
import { ROUND_FILES, roundUri } from "../../operator/api/round-layout.ts";

export type SeedOptions = {
  run?: { namespace: string; name: string; uid?: string };
  slices?: string[];
  /** Write eval.json with this meanRecallAt1 on the round's slice. */
  recall?: number;
  /** Write the model files promotion copies (the encoders are written with any eval.json too). */
  model?: boolean;
  /** The content of the encoders eval.json says it scored (default: the ones written). */
  scored?: { image: string; text: string };
  /** Write _SUCCESS (a trained round). */
  trained?: boolean;
};

/** key (relative to the bucket) -> body of a round folder's files. */
export function roundFiles(bucket: string, prefix: string, index: number, o: SeedOptions = {}): Map<string, string> {
  const slices = o.slices ?? [String(2016 + index)];
  const uri = roundUri({ bucket, prefix }, index);
  const key = (file: string) => uri.slice(`s3://${bucket}/`.length) + file;
  const files = new Map<string, string>();
  const plan = {
    schemaVersion: 1,
    run: {
      namespace: o.run?.namespace ?? "ns",
      name: o.run?.name ?? "demo",
      ...(o.run?.uid ? { uid: o.run.uid } : {}),
    },
    round: index,
    newSlices: slices,
    replay: "CumulativeAll",
    model: { architecture: "ticclip-tiny", initCheckpoint: null },
    data: {
      sources: slices.map((s) => ({
        sliceId: s,
        shards: [{ uri: `s3://data/slices/${s}/shard-00000.tar`, samples: 16 }],
        weight: 1,
        expectedShare: 1 / slices.length,
      })),
      samples: 16,
    },
    optimizer: { lr: 1e-3, weightDecay: 0.2, warmupSteps: 0, batchSize: 16, precision: "fp32" },
    output: { uri },
    checkpointIntervalMinutes: 1,
    seed: index,
    s3: { region: "us-east-1", endpoint: null },
  };
  files.set(key(ROUND_FILES.plan), JSON.stringify(plan));
  if (o.trained !== false) {
    files.set(key(ROUND_FILES.checkpoint), "checkpoint");
    files.set(key(ROUND_FILES.success), "");
  }
  // An evaluated round has its encoders: eval.json records the sha256 of the ones it scored.
  const encoders = { image: `${uri}image_encoder.onnx`, text: `${uri}text_encoder.onnx` };
  if (o.model || o.recall !== undefined)
    for (const f of ["image_encoder.onnx", "text_encoder.onnx"] as const)
      files.set(key(f), encoders[f === "image_encoder.onnx" ? "image" : "text"]);
  if (o.model) files.set(key("model.json"), "model.json");
  const sha = (s: string) => createHash("sha256").update(s).digest("hex");
  if (o.recall !== undefined) {
    const scores = {
      uri,
      architecture: "ticclip-tiny",
      embeddingDim: 32,
      sha256: { image: sha(o.scored?.image ?? encoders.image), text: sha(o.scored?.text ?? encoders.text) },
      retrieval: [
        {
          sliceId: slices[0],
          packUri: `s3://data/slices/${slices[0]}/eval/`,
          relation: "id",
          images: 8,
          texts: 8,
          metrics: { meanRecallAt1: o.recall },
        },
      ],
      zeroShot: [],
      metrics: { "retrieval.id.meanRecallAt1": o.recall },
      notApplicable: {},
    };
    files.set(
      key(ROUND_FILES.eval),
      JSON.stringify({
        schemaVersion: 1,
        status: "Succeeded",
        round: index,
        roundUri: uri,
        roundSlices: slices,
        evaluatedAt: "2026-01-01T00:00:00Z",
        k: [1],
        candidate: scores,
        matrix: {
          metric: "meanRecallAt1",
          rounds: [index],
          roundSlices: [slices],
          slices,
          values: [[o.recall]],
          summary: { id: o.recall, backward: null, forward: null },
        },
        timing: { seconds: 0, imagesEncoded: 0, textsEncoded: 0, executionProvider: "cpu" },
      }),
    );
  }
  return files;
}
