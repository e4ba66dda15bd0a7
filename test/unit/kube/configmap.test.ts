import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type * as k8s from "@kubernetes/client-node";
import { applyConfigMap, type ConfigMapApi } from "../../../operator/kube/children.ts";
import type { ConfigMap } from "../../../operator/kube/objects.ts";

// client-node's CoreV1Api is what the ChildClient passes in.
const fits = (api: k8s.CoreV1Api): ConfigMapApi => api;
void fits;

const cm: ConfigMap = {
  apiVersion: "v1",
  kind: "ConfigMap",
  metadata: {
    name: "b16-model",
    namespace: "ml",
    labels: { "ticclip.dev/run": "b16" },
    ownerReferences: [
      {
        apiVersion: "ticclip.dev/v1alpha1",
        kind: "ContinualClipRun",
        name: "b16",
        uid: "uid-1",
        controller: true,
        blockOwnerDeletion: true,
      },
    ],
  },
  data: { alias: "production", version: "4", round: "6" },
};

type Call = [string, unknown];
function fakeApi(
  existing: { data: Record<string, string>; uid?: string } | undefined,
  conflictOnce = false,
): { api: ConfigMapApi; calls: Call[] } {
  const calls: Call[] = [];
  let conflicts = conflictOnce ? 1 : 0;
  const api: ConfigMapApi = {
    async readNamespacedConfigMap(p) {
      calls.push(["read", p.name]);
      if (!existing) throw Object.assign(new Error("not found"), { code: 404 });
      return {
        metadata: { resourceVersion: "7", ownerReferences: [{ uid: existing.uid ?? "uid-1" }] },
        data: existing.data,
      };
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
  test("creates when absent", async () => {
    const { api, calls } = fakeApi(undefined);
    assert.equal(await applyConfigMap(api, cm), "created");
    assert.deepEqual(
      calls.map((c) => c[0]),
      ["read", "create"],
    );
  });
  test("leaves an identical owned ConfigMap alone", async () => {
    const { api, calls } = fakeApi({ data: { ...cm.data } });
    assert.equal(await applyConfigMap(api, cm), "unchanged");
    assert.deepEqual(
      calls.map((c) => c[0]),
      ["read"],
    );
  });
  test("replaces changed data with the read resourceVersion", async () => {
    const { api, calls } = fakeApi({ data: { ...cm.data, version: "3" } });
    assert.equal(await applyConfigMap(api, cm), "updated");
    assert.deepEqual(calls.at(-1), ["replace", "7"]);
  });
  test("a create that races another writer falls back to replace", async () => {
    const { api, calls } = fakeApi(undefined, true);
    assert.equal(await applyConfigMap(api, cm), "updated");
    assert.deepEqual(
      calls.map((c) => c[0]),
      ["read", "create", "read", "replace"],
    );
  });
  test("leaves a ConfigMap owned by someone else alone", async () => {
    const { api, calls } = fakeApi({ data: { ...cm.data, version: "3" }, uid: "someone-else" });
    assert.equal(await applyConfigMap(api, cm), "notOwned");
    assert.deepEqual(
      calls.map((c) => c[0]),
      ["read"],
    );
  });
});
