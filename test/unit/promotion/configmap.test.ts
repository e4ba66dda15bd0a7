import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { buildModelConfigMap } from "../../../operator/promotion/configmap.ts";
import type { AliasPointer } from "../../../operator/api/promotion.ts";

const pointer: AliasPointer = {
  schemaVersion: 1,
  alias: "production",
  version: 4,
  round: 6,
  run: { namespace: "ml", name: "b16", uid: "uid-1" },
  uri: "s3://models/clip/v4/",
  uris: {
    imageEncoder: "s3://models/clip/v4/image_encoder.onnx",
    textEncoder: "s3://models/clip/v4/text_encoder.onnx",
    modelJson: "s3://models/clip/v4/model.json",
    checkpoint: "s3://models/clip/v4/checkpoint.pt",
  },
  metrics: { "retrieval.id.meanRecallAt1": 0.42, "zeroShot.x.top1": 0.3 },
  promotedAt: "2026-01-01T00:00:00Z",
  pinned: false,
};
const owner = {
  apiVersion: "ticclip.dev/v1alpha1",
  kind: "ContinualClipRun",
  name: "b16",
  namespace: "ml",
  uid: "uid-1",
};

describe("buildModelConfigMap", () => {
  test("carries version, round, URIs and metrics, owned by the run", () => {
    const cm = buildModelConfigMap("b16-model", owner, pointer, "s3://models/clip/production.json");
    assert.equal(cm.metadata.namespace, "ml");
    assert.deepEqual(cm.metadata.ownerReferences, [
      {
        apiVersion: "ticclip.dev/v1alpha1",
        kind: "ContinualClipRun",
        name: "b16",
        uid: "uid-1",
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    assert.equal(cm.data.version, "4");
    assert.equal(cm.data.round, "6");
    assert.equal(cm.data.imageEncoderUri, "s3://models/clip/v4/image_encoder.onnx");
    assert.deepEqual(JSON.parse(cm.data["metrics.json"]!), pointer.metrics);
    assert.deepEqual(JSON.parse(cm.data["pointer.json"]!), pointer);
  });
});

describe("model ConfigMap labels", () => {
  test("a run name of 253 characters still gives label values of at most 63", () => {
    const long = { ...owner, name: `${"a".repeat(120)}.${"b".repeat(132)}` };
    const cm = buildModelConfigMap("model", long, pointer, "s3://models/clip/production.json");
    for (const [k, v] of Object.entries(cm.metadata.labels))
      assert.ok(v.length <= 63, `${k}=${v} is ${v.length} characters`);
    assert.equal(cm.metadata.ownerReferences[0]!.name, long.name, "the owner reference keeps the full name");
  });
});
