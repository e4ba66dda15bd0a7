// spec.promotion.git in the Reconciler, against fakes: Git follows the alias as read from S3, once
// per alias move, and a Git failure is a condition that never holds the S3 promotion back.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { decideGit, GIT_RECHECK_MS, gitRetryMs } from "../../../operator/controller/git.ts";
import type { GitAccess } from "../../../operator/controller/ports.ts";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";
import type { AliasPointer } from "../../../operator/api/promotion.ts";
import type { GitSyncOutcome, GitSyncRequest } from "../../../operator/git/repository.ts";
import { readAlias } from "../../../operator/promotion/versions.ts";
import { fakeWorld, WORLD_NOW } from "./fakes.ts";

/** A Git server in memory: one branch of files, the commits pushed, and an optional failure. */
class FakeGit implements GitAccess {
  files = new Map<string, string>();
  commits: { message: string; files: string[] }[] = [];
  requests: GitSyncRequest[] = [];
  fail: Extract<GitSyncOutcome, { ok: false }> | undefined;
  async sync(req: GitSyncRequest): Promise<GitSyncOutcome> {
    this.requests.push(req);
    if (this.fail) return this.fail;
    const change = req.plan(new Map(req.paths.map((p) => [p, this.files.get(p)])));
    const head = `c${this.commits.length}`;
    if (change.kind === "problem") return { ok: false, ...change, attempts: 1, requests: 2 };
    if (change.kind === "unchanged")
      return { ok: true, commit: undefined, head, branch: req.branch, attempts: 1, requests: 2 };
    for (const f of change.files) this.files.set(f.path, f.content);
    this.commits.push({ message: req.message, files: change.files.map((f) => f.path) });
    const commit = `c${this.commits.length}`;
    return { ok: true, commit, head: commit, branch: req.branch, attempts: 1, requests: 4 };
  }
}

const NOW = WORLD_NOW;
const GIT = { url: "https://git.example.com/serving.git", path: "serving/model.yaml", secretRef: { name: "git" } };

function setup(promotion: Record<string, unknown> = {}) {
  const git = new FakeGit();
  const world = fakeWorld({
    spec: {
      evaluation: { gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0.3 }] },
      promotion: { mode: "Auto", s3: { bucket: "models", prefix: "clip/" }, git: GIT, ...promotion },
    },
    deps: { git },
  });
  const { runs, children } = world;
  children.secrets.set("git", { password: Buffer.from("token-123456").toString("base64") });
  const w = {
    ...world,
    git,
    later: (ms: number) => {
      world.setNow(new Date(world.now().getTime() + ms));
    },
    seed: (index: number, recall = 0.5) => world.seed(index, { recall, model: true }),
    reconcile: async (n = 4) => {
      for (let i = 0; i < n; i++) await w.reconciler.reconcile("ns/demo");
    },
    editPromotion: (p: Record<string, unknown>) => {
      const r = runs.runs.get("ns/demo")!;
      const spec = r.spec as { promotion: Record<string, unknown> };
      r.spec = { ...spec, promotion: { ...spec.promotion, ...p } };
      r.metadata.generation = (r.metadata.generation ?? 0) + 1;
    },
  };
  return w;
}

test("a promotion is one commit of the model file with the message; more reconciles add none", async () => {
  const w = setup();
  w.seed(0);
  await w.reconcile();
  assert.equal(w.git.commits.length, 1);
  assert.deepEqual(w.git.commits[0]!.files, ["serving/model.yaml"]);
  assert.match(w.git.commits[0]!.message, /^demo: promote production to v1 \(round 0\)\n/);
  assert.match(w.git.commits[0]!.message, /- retrieval\.id\.meanRecallAt1: 0\.5 \(threshold 0\.3\) passed/);
  assert.match(w.git.files.get("serving/model.yaml")!, /version: "1"/);
  assert.equal(w.git.requests[0]!.credentials.auth && "password" in w.git.requests[0]!.credentials.auth, true);
  const synced = w.condition("GitSynced")!;
  assert.deepEqual([synced.status, synced.reason], ["True", "Synced"]);
  assert.match(synced.message, /^v1 is on https:\/\/git\.example\.com\/serving\.git main \(commit c1\)/);
  assert.ok(w.events.list.some((e) => e.reason === "GitCommitted"));
  const calls = w.git.requests.length;
  await w.reconcile();
  assert.equal(w.git.requests.length, calls, "a synced pointer is not fetched again");
  w.later(GIT_RECHECK_MS);
  await w.reconcile();
  assert.equal(w.git.requests.length, calls + 1, "checked again after GIT_RECHECK_MS");
  assert.equal(w.git.commits.length, 1, "which commits nothing: the file says it");
});

test("after a restart (no memory) Git is checked once, and the file already saying it is no commit", async () => {
  const w = setup();
  w.seed(0);
  await w.reconcile();
  w.reconciler = w.another();
  await w.reconcile();
  assert.equal(w.git.requests.length, 2);
  assert.equal(w.git.commits.length, 1);
});

test("a crash between the alias write and the push: the next process commits from the alias", async () => {
  const w = setup();
  w.seed(0);
  w.git.fail = { ok: false, reason: "GitUnreachable", field: "url", message: "x", attempts: 1, requests: 1 };
  await w.reconcile();
  const alias = await readAlias(w.s3.objects, { bucket: "models", prefix: "clip/", alias: "production" });
  assert.equal(alias && !("invalid" in alias) && alias.version, 1, "the alias moved");
  assert.equal(w.git.commits.length, 0);
  w.git.fail = undefined;
  w.reconciler = w.another();
  await w.reconcile();
  assert.equal(w.git.commits.length, 1);
});

test("pinVersion and unpinning each produce a commit", async () => {
  const w = setup();
  w.seed(0);
  await w.reconcile();
  w.seed(1, 0.6);
  w.reconciler = w.another(); // lists the artifacts again (a steady run waits for its next poll)
  await w.reconcile(6);
  assert.equal(w.git.commits.length, 2);
  w.editPromotion({ pinVersion: 1 });
  await w.reconcile();
  assert.equal(w.git.commits.length, 3);
  assert.match(w.git.commits[2]!.message, /^demo: roll back production to v1 \(round 0\)/);
  assert.match(w.git.files.get("serving/model.yaml")!, /pinned: "true"/);
  w.editPromotion({ pinVersion: null });
  await w.reconcile();
  assert.equal(w.git.commits.length, 4);
  assert.match(w.git.commits[3]!.message, /^demo: promote production to v2 \(round 1\)/);
});

test("a Git failure is a condition naming the field, the S3 promotion goes on, retried with backoff", async () => {
  const w = setup();
  w.git.fail = {
    ok: false,
    reason: "GitAuthFailed",
    field: "secretRef",
    message: "the Git server refused the credentials to fetch (HTTP 401 Unauthorized)",
    attempts: 1,
    requests: 1,
  };
  w.seed(0);
  await w.reconcile();
  const git = w.condition("GitSynced")!;
  assert.deepEqual([git.status, git.reason], ["False", "GitAuthFailed"]);
  assert.match(git.message, /^spec\.promotion\.git\.secretRef: the Git server refused the credentials/);
  const ready = w.condition("Ready")!;
  assert.deepEqual([ready.status, ready.reason], ["False", "GitAuthFailed"]);
  assert.equal(w.condition("Stalled")!.status, "True");
  const status = w.runs.runs.get("ns/demo")!.status as { promoted?: { version: number } };
  assert.equal(status.promoted?.version, 1, "promoted in S3 all the same");
  assert.equal(w.events.list.filter((e) => e.reason === "GitAuthFailed").length, 1);
  const calls = w.git.requests.length;
  await w.reconcile();
  assert.equal(w.git.requests.length, calls, "no retry before the backoff");
  w.later(gitRetryMs(1));
  w.git.fail = undefined;
  await w.reconcile();
  assert.equal(w.git.commits.length, 1);
  assert.equal(w.condition("GitSynced")!.status, "True");
  assert.equal(w.condition("Ready")!.status, "True");
});

test("a Secret without password or bearerToken: GitSecretInvalid, nothing sent", async () => {
  const w = setup();
  w.children.secrets.set("git", { username: Buffer.from("me").toString("base64") });
  w.seed(0);
  await w.reconcile();
  assert.equal(w.condition("GitSynced")!.reason, "GitSecretInvalid");
  assert.match(w.condition("GitSynced")!.message, /secretRef: Secret git has neither password/);
  assert.equal(w.git.requests.length, 0);
});

test("a file that cannot be updated is a condition, not an overwrite", async () => {
  const w = setup();
  w.git.files.set("serving/model.yaml", "kind: Deployment\n");
  w.seed(0);
  await w.reconcile();
  assert.equal(w.condition("GitSynced")!.reason, "GitFileNotOwned");
  assert.equal(w.git.files.get("serving/model.yaml"), "kind: Deployment\n");
});

describe("decideGit", () => {
  const spec = continualClipRunSpec.parse({
    source: { s3: { bucket: "data", prefix: "slices/" } },
    model: { architecture: "ticclip-tiny" },
    strategy: { samplesPerRound: 20 },
    trainer: { image: "trainer:1" },
    artifacts: { s3: { bucket: "runs", prefix: "demo/" } },
    promotion: { s3: { bucket: "models", prefix: "clip/" }, git: GIT },
  });
  const pointer: AliasPointer = {
    schemaVersion: 1,
    alias: "production",
    version: 2,
    round: 3,
    run: { namespace: "ns", name: "demo", uid: "uid-1" },
    uri: "s3://models/clip/v2/",
    uris: {},
    metrics: {},
    promotedAt: "t",
    pinned: false,
  };
  const input = {
    run: { name: "demo", namespace: "ns", uid: "uid-1" },
    spec,
    alias: pointer,
    state: undefined,
    rounds: [],
    aliasPending: false,
    now: NOW,
  };
  test("no git, no decision; no alias yet, no sync", () => {
    assert.deepEqual(decideGit({ ...input, spec: { ...spec, promotion: { ...spec.promotion!, git: undefined } } }), {
      actions: [],
    });
    assert.deepEqual(decideGit({ ...input, alias: undefined }).actions, []);
  });
  test("an alias not yet synced is synced, unless the alias is about to move", () => {
    assert.equal(decideGit(input).actions[0]?.kind, "SyncGit");
    assert.deepEqual(decideGit({ ...input, aliasPending: true }).actions, []);
  });
  test("the key follows the pointer and the target", () => {
    const key = decideGit(input).actions[0]!.key;
    assert.notEqual(decideGit({ ...input, alias: { ...pointer, version: 3 } }).actions[0]!.key, key);
    const other = { ...spec, promotion: { ...spec.promotion!, git: { ...spec.promotion!.git!, branch: "prod" } } };
    assert.notEqual(decideGit({ ...input, spec: other }).actions[0]!.key, key);
  });
  test("backoff doubles from 5 s to 5 min", () => {
    assert.deepEqual([1, 2, 3, 10].map(gitRetryMs), [5_000, 10_000, 20_000, 300_000]);
  });
});
