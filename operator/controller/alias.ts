// Sub-decider for the alias and the model ConfigMap: rollback by spec.promotion.pinVersion, back
// to the newest version when it is cleared, and the ConfigMap following the alias. Pure.
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import type { AliasPointer } from "../api/promotion.ts";
import { buildModelConfigMap } from "../promotion/configmap.ts";
import { aliasUri, promotionTarget } from "../promotion/versions.ts";
import type { AliasAction, ObservedConfigMap, PlannedEvent } from "./types.ts";

export type AliasInput = {
  run: { name: string; namespace: string; uid: string };
  spec: ContinualClipRunSpec;
  alias: AliasPointer | { invalid: string } | undefined;
  configMap: ObservedConfigMap | undefined;
};

const sameData = (a: Record<string, string>, b: Record<string, string>) =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);

export function decideAlias(input: AliasInput): AliasAction[] {
  const { spec, run } = input;
  const promotion = spec.promotion;
  if (!promotion) return [];
  const pointer = input.alias;
  // A malformed pointer is reported by promotion, never guessed at or overwritten here.
  if (pointer && "invalid" in pointer) return [];
  const target = promotionTarget(promotion);
  const pin = promotion.pinVersion ?? undefined;
  if (pin !== undefined && (!pointer || pointer.version !== pin || !pointer.pinned)) {
    // The ConfigMap follows on the next pass, from the pointer as written.
    const event: PlannedEvent = { type: "Normal", reason: "RolledBack", message: `alias ${target.alias} pinned to v${pin}` };
    return [{ kind: "PinAlias", version: pin, event }];
  }
  if (pin === undefined && pointer?.pinned) return [{ kind: "UnpinAlias" }];
  if (!pointer || !promotion.configMapName) return [];
  const configMap = buildModelConfigMap(promotion.configMapName, run, pointer, aliasUri(target));
  const current = input.configMap;
  const owned = current?.ownerUids.includes(run.uid) ?? false;
  if (current && owned && sameData(current.data, configMap.data)) return [];
  return [{ kind: "ApplyConfigMap", configMap }];
}
