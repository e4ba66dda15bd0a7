// Sub-decider for the alias and the model ConfigMap: rollback by spec.promotion.pinVersion, back
// to the newest version when it is cleared, and the ConfigMap following the alias. Pure.
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import type { AliasPointer } from "../api/promotion.ts";
import { buildModelConfigMap } from "../promotion/configmap.ts";
import { aliasUri, promotionTarget } from "../promotion/versions.ts";
import type { AliasAction, ObservedConfigMap, PlannedEvent, Problem } from "./types.ts";

export type AliasInput = {
  run: { name: string; namespace: string; uid: string };
  spec: ContinualClipRunSpec;
  alias: AliasPointer | { invalid: string } | undefined;
  configMap: ObservedConfigMap | undefined;
};

const sameData = (a: Record<string, string>, b: Record<string, string>) =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);

export type AliasDecision = { actions: AliasAction[]; problem?: Problem | undefined };

export function decideAlias(input: AliasInput): AliasDecision {
  const { spec, run } = input;
  const promotion = spec.promotion;
  if (!promotion) return { actions: [] };
  const pointer = input.alias;
  // A malformed pointer is reported by promotion, never guessed at or overwritten here.
  if (pointer && "invalid" in pointer) return { actions: [] };
  // A ConfigMap of that name that this run does not own belongs to someone else: replacing it
  // would also hand it to the run's garbage collection.
  const current = input.configMap;
  if (promotion.configMapName && current && !current.ownerUids.includes(run.uid)) {
    const message = `spec.promotion.configMapName: ConfigMap ${promotion.configMapName} exists and is not owned by this run; rename it in the spec or delete the ConfigMap`;
    return { actions: [], problem: { reason: "ConfigMapNotOwned", message } };
  }
  const target = promotionTarget(promotion);
  const pin = promotion.pinVersion ?? undefined;
  if (pin !== undefined && (!pointer || pointer.version !== pin || !pointer.pinned)) {
    // The ConfigMap follows on the next pass, from the pointer as written.
    const event: PlannedEvent = {
      type: "Normal",
      reason: "RolledBack",
      message: `alias ${target.alias} pinned to v${pin}`,
    };
    return { actions: [{ kind: "PinAlias", version: pin, event }] };
  }
  if (pin === undefined && pointer?.pinned) return { actions: [{ kind: "UnpinAlias" }] };
  if (!pointer || !promotion.configMapName) return { actions: [] };
  const configMap = buildModelConfigMap(promotion.configMapName, run, pointer, aliasUri(target));
  if (current && sameData(current.data, configMap.data)) return { actions: [] };
  return { actions: [{ kind: "ApplyConfigMap", configMap }] };
}
