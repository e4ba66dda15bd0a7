// The ConfigMap describing the promoted model (spec.promotion.configMapName), owned by the run so
// it goes when the run goes. Pure: the kube adapter (kube/children.ts) writes it.
import type { AliasPointer } from "../api/promotion.ts";
import { LABELS, ownerReference, runLabels, type ConfigMap } from "../kube/objects.ts";

export function buildModelConfigMap(
  name: string,
  // The run, or any object naming it (apiVersion and kind are the run's own).
  run: { name: string; namespace: string; uid: string; apiVersion?: string; kind?: string },
  pointer: AliasPointer,
  pointerUri: string,
): ConfigMap {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name,
      namespace: run.namespace,
      labels: { ...runLabels(run.name), [LABELS.alias]: pointer.alias },
      ownerReferences: [ownerReference(run)],
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
