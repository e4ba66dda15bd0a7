// Carries out a SyncGit action (git.ts decides it): reads the credentials Secret, asks the Git
// adapter to make the files of spec.promotion.git say the alias's model, and remembers the outcome
// for the next decision. A Git failure never fails the reconcile: it is a state the run shows
// (GitSynced, Ready/Stalled with the reason), retried with backoff.
import { gitCredentialsFromSecret } from "../git/credentials.ts";
import type { GitAccess } from "../git/repository.ts";
import type { RawObject } from "../kube/client.ts";
import type { Logger } from "../observability/log.ts";
import { gitPaths, planGitChange } from "../promotion/git-target.ts";
import type { GitTargetSpec } from "../api/git-target.ts";
import type { RunMemory } from "./memory.ts";
import type { ChildAccess, EventSink } from "./ports.ts";
import type { GitAction, GitState } from "./types.ts";

export type GitSyncContext = {
  run: RawObject;
  target: GitTargetSpec;
  mem: RunMemory;
  children: ChildAccess;
  events: EventSink;
  git: GitAccess;
  log: Logger;
  now: () => Date;
  signal?: AbortSignal | undefined;
};

export async function syncGit(ctx: GitSyncContext, action: GitAction): Promise<GitState> {
  const { run, target, mem, log } = ctx;
  const previous = mem.git?.key === action.key ? mem.git : undefined;
  const failures = previous && !previous.ok ? previous.failures : 0;
  const at = ctx.now().getTime();
  const secret = target.secretRef
    ? await ctx.children.secretData(run.metadata.namespace, target.secretRef.name)
    : undefined;
  const creds = gitCredentialsFromSecret(target.secretRef, secret);
  const branch = target.pushBranch ?? target.branch;
  const version = action.model.pointer.version;
  let state: GitState;
  if (!creds.ok) {
    state = {
      key: action.key,
      at,
      ok: false,
      reason: creds.reason === "SecretMissing" ? "GitSecretMissing" : "GitSecretInvalid",
      field: "secretRef",
      message: creds.message.replace(/^spec\.promotion\.git\.secretRef: /, ""),
      failures: failures + 1,
    };
  } else {
    const started = Date.now();
    const out = await ctx.git.sync({
      url: target.url,
      branch: target.branch,
      pushBranch: target.pushBranch,
      paths: gitPaths(target),
      plan: (files) => planGitChange(target, files, action.model),
      message: action.message,
      author: target.author,
      credentials: creds.credentials,
      signal: ctx.signal,
    });
    const figures = { attempts: out.attempts, requests: out.requests, ms: Date.now() - started };
    if (out.ok) {
      state = { key: action.key, at, ok: true, commit: out.commit, head: out.head, branch: out.branch };
      if (out.commit) {
        log.info("git commit pushed", { url: target.url, branch, commit: out.commit, version, ...figures });
        await ctx.events.record(
          run,
          "Normal",
          "GitCommitted",
          `v${version} committed to ${target.url} ${branch} as ${out.commit.slice(0, 12)}`,
        );
      } else log.info("git already says the alias", { url: target.url, branch, head: out.head, version, ...figures });
    } else {
      const { reason, field, message } = out;
      state = { key: action.key, at, ok: false, reason, field, message, failures: failures + 1 };
      log.warn("git sync failed", { url: target.url, branch, reason: out.reason, error: out.message, ...figures });
    }
  }
  // The Warning comes from the decision that shows it (Ready's reason changes), once per cause.
  mem.git = state;
  return state;
}
