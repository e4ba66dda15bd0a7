import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type * as k8s from "@kubernetes/client-node";
import { applyConfigMap, buildModelConfigMap, type ConfigMap, type ConfigMapApi } from "../../../operator/promotion/configmap.ts";
import type { AliasPointer } from "../../../operator/api/promotion.ts";

// client-node's CoreV1Api is what the reconciler passes in.
const fits = (api: k8s.CoreV1Api): ConfigMapApi => api;
void fits;

const pointer: AliasPointer = {
  schemaVersion: 1,
  alias: "production",
  version: 4,
  round: 6,
  run: { namespace: "ml", name: "b16", uid: "uid-1" },
  uri: "s3://models/clip/v4/",
  uris: { imageEncoder: "s3://models/clip/v4/image_encoder.onnx", textEncoder: "s3://models/clip/v4/text_encoder.onnx", modelJson: "s3://models/clip/v4/model.json", checkpoint: "s3://models/clip/v4/checkpoint.pt" },
  metrics: { "retrieval.id.meanRecallAt1": 0.42, "zeroShot.x.top1": 0.3 },
  promotedAt: "2026-01-01T00:00:00Z",
  pinned: false,
};
const owner = { apiVersion: "ticclip.dev/v1alpha1", kind: "ContinualClipRun", name: "b16", namespace: "ml", uid: "uid-1" };

describe("buildModelConfigMap", () => {
  test("carries version, round, URIs and metrics, owned by the run", () => {
    const cm = buildModelConfigMap("b16-model", owner, pointer, "s3://models/clip/production.json");
    assert.equal(cm.metadata.namespace, "ml");
    assert.deepEqual(cm.metadata.ownerReferences, [
      { apiVersion: "ticclip.dev/v1alpha1", kind: "ContinualClipRun", name: "b16", uid: "uid-1", controller: true, blockOwnerDeletion: true },
    ]);
    assert.equal(cm.data.version, "4");
    assert.equal(cm.data.round, "6");
    assert.equal(cm.data.imageEncoderUri, "s3://models/clip/v4/image_encoder.onnx");
    assert.deepEqual(JSON.parse(cm.data["metrics.json"]!), pointer.metrics);
    assert.deepEqual(JSON.parse(cm.data["pointer.json"]!), pointer);
  });
});

type Call = [string, unknown];
function fakeApi(existing: { data: Record<string, string>; uid?: string } | undefined, conflictOnce = false): { api: ConfigMapApi; calls: Call[] } {
  const calls: Call[] = [];
  let conflicts = conflictOnce ? 1 : 0;
  const api: ConfigMapApi = {
    async readNamespacedConfigMap(p) {
      calls.push(["read", p.name]);
      if (!existing) throw Object.assign(new Error("not found"), { code: 404 });
      return { metadata: { resourceVersion: "7", ownerReferences: [{ uid: existing.uid ?? "uid-1" }] }, data: existing.data };
    },
    async createNamespacedConfigMap(p) {
      calls.push(["create", p.body.metadata.name]);
      if (conflicts-- > 0) {
        existing = { data: {} };
        throw Object.assign(new Error("exists"), { code: 409 });
      }
    },
    async replaceNamespacedConfigMap(p: { body: ConfigMap }) {
      calls.push(["replace", p.body.metadata.resourceVersion]);
    },
  };
  return { api, calls };
}

describe("applyConfigMap", () => {
  const cm = buildModelConfigMap("b16-model", owner, pointer, "s3://models/clip/production.json");
  test("creates when absent", async () => {
    const { api, calls } = fakeApi(undefined);
    assert.equal(await applyConfigMap(api, cm), "created");
    assert.deepEqual(calls.map((c) => c[0]), ["read", "create"]);
  });
  test("leaves an identical owned ConfigMap alone", async () => {
    const { api, calls } = fakeApi({ data: { ...cm.data } });
    assert.equal(await applyConfigMap(api, cm), "unchanged");
    assert.deepEqual(calls.map((c) => c[0]), ["read"]);
  });
  test("replaces changed data with the read resourceVersion", async () => {
    const { api, calls } = fakeApi({ data: { ...cm.data, version: "3" } });
    assert.equal(await applyConfigMap(api, cm), "updated");
    assert.deepEqual(calls.at(-1), ["replace", "7"]);
  });
  test("a create that races another writer falls back to replace", async () => {
    const { api, calls } = fakeApi(undefined, true);
    assert.equal(await applyConfigMap(api, cm), "updated");
    assert.deepEqual(calls.map((c) => c[0]), ["read", "create", "read", "replace"]);
  });
});
