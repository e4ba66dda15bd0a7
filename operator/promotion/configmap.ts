// The ConfigMap describing the promoted model (spec.promotion.configMapName), owned by the run so
// it goes when the run goes. buildModelConfigMap is pure; applyConfigMap is the thin adapter.
import type { AliasPointer } from "../api/promotion.ts";
import { isConflict, isNotFound } from "../kube/errors.ts";

export type ConfigMap = {
  apiVersion: "v1";
  kind: "ConfigMap";
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations?: Record<string, string>;
    ownerReferences: { apiVersion: string; kind: string; name: string; uid: string; controller: boolean; blockOwnerDeletion: boolean }[];
    resourceVersion?: string;
  };
  data: Record<string, string>;
};

export type Owner = { apiVersion: string; kind: string; name: string; namespace: string; uid: string };

export function buildModelConfigMap(name: string, owner: Owner, pointer: AliasPointer, pointerUri: string): ConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name,
      namespace: owner.namespace,
      labels: {
        "app.kubernetes.io/managed-by": "continual-clip-operator",
        "ticclip.dev/run": owner.name,
        "ticclip.dev/alias": pointer.alias,
      },
      ownerReferences: [{ apiVersion: owner.apiVersion, kind: owner.kind, name: owner.name, uid: owner.uid, controller: true, blockOwnerDeletion: true }],
    },
    // Flat keys for env/volume consumers; model.json-like pointer for programs.
    data: {
      alias: pointer.alias,
      version: String(pointer.version),
      round: String(pointer.round),
      pinned: String(pointer.pinned),
      uri: pointer.uri,
      pointerUri,
      imageEncoderUri: pointer.uris.imageEncoder ?? "",
      textEncoderUri: pointer.uris.textEncoder ?? "",
      modelJsonUri: pointer.uris.modelJson ?? "",
      checkpointUri: pointer.uris.checkpoint ?? "",
      promotedAt: pointer.promotedAt,
      "metrics.json": JSON.stringify(pointer.metrics, Object.keys(pointer.metrics).sort()),
      "pointer.json": JSON.stringify(pointer),
    },
  };
}

/** The calls applyConfigMap makes; @kubernetes/client-node's CoreV1Api fits it structurally. */
export type ConfigMapApi = {
  readNamespacedConfigMap(p: { name: string; namespace: string }): Promise<{ metadata?: { resourceVersion?: string; ownerReferences?: { uid?: string }[] }; data?: Record<string, string> }>;
  createNamespacedConfigMap(p: { namespace: string; body: ConfigMap }): Promise<unknown>;
  replaceNamespacedConfigMap(p: { name: string; namespace: string; body: ConfigMap }): Promise<unknown>;
};

export type ApplyResult = "created" | "updated" | "unchanged";

const sameData = (a: Record<string, string> | undefined, b: Record<string, string>) =>
  a !== undefined && Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);

/** Create-if-absent, else replace when the data differ. A 409 (raced create or stale read) is retried once. */
export async function applyConfigMap(api: ConfigMapApi, cm: ConfigMap): Promise<ApplyResult> {
  const { name, namespace } = cm.metadata;
  for (let attempt = 0; ; attempt++) {
    let current: Awaited<ReturnType<ConfigMapApi["readNamespacedConfigMap"]>> | undefined;
    try {
      current = await api.readNamespacedConfigMap({ name, namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    try {
      if (!current) {
        await api.createNamespacedConfigMap({ namespace, body: cm });
        return "created";
      }
      const owned = current.metadata?.ownerReferences?.some((o) => o.uid === cm.metadata.ownerReferences[0]?.uid);
      if (owned && sameData(current.data, cm.data)) return "unchanged";
      const rv = current.metadata?.resourceVersion;
      await api.replaceNamespacedConfigMap({ name, namespace, body: { ...cm, metadata: { ...cm.metadata, ...(rv ? { resourceVersion: rv } : {}) } } });
      return "updated";
    } catch (err) {
      if (isConflict(err) && attempt === 0) continue;
      throw err;
    }
  }
}
