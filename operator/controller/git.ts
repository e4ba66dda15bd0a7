// Sub-decider for spec.promotion.git: Git follows the alias. Runs after the alias and ConfigMap
// step, from the pointer as read from S3 (the source of truth), so a crash anywhere between the
// alias write and the push converges: a process that does not remember having synced this
// pointer syncs again, and a sync whose files already say it commits nothing. Pure.
import { createHash } from "node:crypto";
import type { ContinualClipRunSpec } from "../api/continual-clip-run.ts";
import type { AliasPointer } from "../api/promotion.ts";
import { renderCommitMessage, type GateLine, type GitModel } from "../promotion/git-target.ts";
import { aliasUri, promotionTarget } from "../promotion/versions.ts";
import type { ConditionUpdate } from "./conditions.ts";
import type { GitAction, GitState, Problem, RoundRecord } from "./types.ts";

/** A synced pointer is checked again after this long (a hand edit or a reset branch is repaired). */
export const GIT_RECHECK_MS = 30 * 60_000;

/** Wait before retrying a failed sync of the same pointer: 5 s doubling to 5 min. */
export const gitRetryMs = (failures: number) => Math.min(5 * 60_000, 5_000 * 2 ** Math.max(0, failures - 1));

export type GitInput = {
  run: { name: string; namespace: string; uid: string };
  spec: ContinualClipRunSpec;
  alias: AliasPointer | { invalid: string } | undefined;
  state: GitState | undefined;
  /** Rounds as decided this pass: the promoted round's gate results go in the commit message. */
  rounds: readonly RoundRecord[];
  /** The alias is about to move (PointAlias): follow it on the next pass. */
  aliasPending: boolean;
  now: Date;
};

export type GitDecision = {
  actions: GitAction[];
  condition?: ConditionUpdate | undefined;
  problem?: Problem | undefined;
};

export const GIT_CONDITION = "GitSynced";

export function decideGit(input: GitInput): GitDecision {
  const promotion = input.spec.promotion;
  const target = promotion?.git;
  if (!promotion || !target) return { actions: [] };
  const pointer = input.alias && !("invalid" in input.alias) ? input.alias : undefined;
  if (!pointer) {
    const message = "nothing promoted yet";
    return { actions: [], condition: { type: GIT_CONDITION, status: "Unknown", reason: "NothingPromoted", message } };
  }
  const model: GitModel = { run: input.run, pointer, pointerUri: aliasUri(promotionTarget(promotion)) };
  const key = createHash("sha256")
    .update(JSON.stringify([target, input.run.uid, pointer]))
    .digest("hex");
  const state = input.state?.key === key ? input.state : undefined;
  const where = `${target.url} ${target.pushBranch ?? target.branch}`;
  const gates = input.rounds.find((r) => r.index === pointer.round)?.gates as GateLine[] | undefined;
  const sync: GitAction = {
    kind: "SyncGit",
    key,
    model,
    message: renderCommitMessage(target.commitMessage, model, gates),
  };
  const due = (at: number, wait: number) => input.now.getTime() - at >= wait;
  if (state?.ok) {
    const condition: ConditionUpdate = {
      type: GIT_CONDITION,
      status: "True",
      reason: "Synced",
      message: `v${pointer.version} is on ${where} (${state.commit ? "commit" : "at"} ${state.head.slice(0, 12)})`,
    };
    return { actions: due(state.at, GIT_RECHECK_MS) && !input.aliasPending ? [sync] : [], condition };
  }
  if (state && !state.ok) {
    const message = `spec.promotion.git.${state.field}: ${state.message}`;
    return {
      actions: due(state.at, gitRetryMs(state.failures)) && !input.aliasPending ? [sync] : [],
      condition: { type: GIT_CONDITION, status: "False", reason: state.reason, message },
      problem: { reason: state.reason, message },
    };
  }
  const message = `writing v${pointer.version} to ${where}`;
  return {
    actions: input.aliasPending ? [] : [sync],
    condition: { type: GIT_CONDITION, status: "Unknown", reason: "Syncing", message },
  };
}
