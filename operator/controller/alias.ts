// Sub-decider for the alias and the model ConfigMap. Pure. Every pass converges, in this order:
//   1. the alias on the version that should be served: spec.promotion.pinVersion when set (a
//      rollback), else the newest complete version this run made, whatever step failed before (an
//      alias write that failed after version.json, a crash between the two, someone moving it);
//   2. the ConfigMap on the alias as written (the next pass, from the pointer read back);
//   3. status.promoted, which decide.ts builds from the same pointer.
// A pointer or version written by another run is never replaced: the run is refused with a
// condition (docs/design.md, "Several teams on one operator").
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import type { AliasPointer, VersionManifest } from "../api/promotion.ts";
import { sameConfigMapData } from "../kube/objects.ts";
import { buildModelConfigMap } from "../promotion/configmap.ts";
import { aliasUri, isSameRun, promotionTarget, versionUri } from "../promotion/versions.ts";
import type { AliasAction, ObservedConfigMap, PlannedEvent, Problem } from "./types.ts";

export type AliasInput = {
  run: { name: string; namespace: string; uid: string };
  spec: ContinualClipRunSpec;
  alias: AliasPointer | { invalid: string } | undefined;
  /** Complete versions under the promotion prefix; undefined when they were not read. */
  versions?: VersionManifest[] | undefined;
  configMap: ObservedConfigMap | undefined;
};

/** The run names a ConfigMap someone else owns (seen when observing, or when applying it). */
export const configMapNotOwned = (name: string): Problem => ({
  reason: "ConfigMapNotOwned",
  message: `spec.promotion.configMapName: ConfigMap ${name} exists and is not owned by this run; rename it in the spec or delete the ConfigMap`,
});

/**
 * problem: why this run may not touch its promotion prefix (Promote actions are dropped with it),
 * or why the alias cannot be converged.
 */
export type AliasDecision = { actions: AliasAction[]; problem?: Problem | undefined; promotionRefused?: boolean };

const who = (r: { namespace: string; name: string; uid: string }) => `${r.namespace}/${r.name} (uid ${r.uid})`;

/**
 * Whether the promotion prefix belongs to another run: a version or the alias written by a run that
 * is not this one (nor its predecessor under the same namespace and name). Runs must not share a
 * promotion prefix; admission refuses what it can see, and this is the runtime's refusal.
 */
export function promotionOwnership(input: AliasInput): Problem | undefined {
  const promotion = input.spec.promotion;
  if (!promotion) return undefined;
  const target = promotionTarget(promotion);
  const foreign = (input.versions ?? []).find((v) => !isSameRun(v.run, input.run));
  if (foreign) {
    return {
      reason: "PromotionPrefixShared",
      message: `spec.promotion.s3: ${versionUri(target, foreign.version)} was made by run ${who(foreign.run)}; runs must not share a promotion prefix, and this run writes nothing there`,
    };
  }
  const pointer = input.alias;
  if (pointer && !("invalid" in pointer) && !isSameRun(pointer.run, input.run)) {
    return {
      reason: "AliasOwnedByAnotherRun",
      message: `spec.promotion.alias: ${aliasUri(target)} was written by run ${who(pointer.run)}; this run does not overwrite it (choose another alias or prefix)`,
    };
  }
  return undefined;
}

export function decideAlias(input: AliasInput): AliasDecision {
  const { spec, run } = input;
  const promotion = spec.promotion;
  if (!promotion) return { actions: [] };
  const pointer = input.alias;
  // A malformed pointer is reported by promotion, never guessed at or overwritten here.
  if (pointer && "invalid" in pointer) return { actions: [] };
  const owned = promotionOwnership(input);
  if (owned) return { actions: [], problem: owned, promotionRefused: true };
  // A ConfigMap of that name that this run does not own belongs to someone else: replacing it
  // would also hand it to the run's garbage collection.
  const current = input.configMap;
  if (promotion.configMapName && current && !current.ownerUids.includes(run.uid)) {
    return { actions: [], problem: configMapNotOwned(promotion.configMapName) };
  }
  const target = promotionTarget(promotion);
  const pin = promotion.pinVersion ?? undefined;
  const versions = input.versions;
  if (versions !== undefined) {
    let want: VersionManifest | undefined;
    if (pin !== undefined) {
      want = versions.find((v) => v.version === pin);
      if (!want) {
        const there = versions.map((v) => v.version).join(", ") || "none";
        const message = `spec.promotion.pinVersion: ${versionUri(target, pin)} is not a complete version (versions: ${there})`;
        return { actions: [], problem: { reason: "PinnedVersionNotFound", message } };
      }
    } else want = versions.at(-1);
    const pinned = pin !== undefined;
    if (want && (!pointer || pointer.version !== want.version || pointer.pinned !== pinned)) {
      // The ConfigMap follows on the next pass, from the pointer as written.
      const event: PlannedEvent = pinned
        ? { type: "Normal", reason: "RolledBack", message: `alias ${target.alias} pinned to v${want.version}` }
        : {
            type: "Normal",
            reason: "AliasUpdated",
            message: `alias ${target.alias} points at v${want.version} (round ${want.round})${pointer ? `, was v${pointer.version}` : ""}`,
          };
      return { actions: [{ kind: "PointAlias", version: want.version, pinned, event }] };
    }
  }
  if (!pointer || !promotion.configMapName) return { actions: [] };
  const configMap = buildModelConfigMap(promotion.configMapName, run, pointer, aliasUri(target));
  if (current && sameConfigMapData(current.data, configMap.data)) return { actions: [] };
  return { actions: [{ kind: "ApplyConfigMap", configMap }] };
}
