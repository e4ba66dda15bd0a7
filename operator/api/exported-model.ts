// model.json, written by the trainer next to the ONNX encoders of each round
// (trainer-image/src/ticclip_trainer/export.py + preprocess.py Preprocessing.to_json).
import { z } from "zod";
import { preprocessingSpec } from "./eval-pack.ts";

export const MODEL_JSON = "model.json";
export const IMAGE_ENCODER = "image_encoder.onnx";
export const TEXT_ENCODER = "text_encoder.onnx";

const dim = z.union([z.int().min(1), z.string().min(1)]);

const onnxIo = z.object({
  name: z.string().min(1),
  dtype: z.enum(["float32", "float16", "int32", "int64"]),
  shape: z.array(dim).min(1),
});

const encoder = z.object({
  file: z.string().min(1),
  input: onnxIo,
  output: onnxIo.extend({ l2Normalized: z.boolean().optional() }),
});

export const exportedModel = preprocessingSpec
  .extend({
    architecture: z.string().min(1),
    embeddingDim: z.int().min(1),
    onnx: z.object({ opset: z.int().optional(), image: encoder, text: encoder }),
  })
  .loose();
export type ExportedModel = z.infer<typeof exportedModel>;
