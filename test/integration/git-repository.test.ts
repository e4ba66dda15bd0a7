// The Git adapter (operator/git/) against a real Git server on loopback: Git's own smart-HTTP
// backend behind HTTPS with basic auth (test/support/git-server.ts). Needs no cluster.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import type { AliasPointer } from "../../operator/api/promotion.ts";
import type { GitCredentials } from "../../operator/git/credentials.ts";
import { GitRepositories, type GitSyncRequest } from "../../operator/git/repository.ts";
import { planGitChange, renderModelFile, type GitModel } from "../../operator/promotion/git-target.ts";
import { GitServer } from "../support/git-server.ts";

let server: GitServer;
before(async () => {
  server = await GitServer.start();
});
after(async () => {
  await server?.stop();
});

const model = (version: number): GitModel => {
  const pointer: AliasPointer = {
    schemaVersion: 1,
    alias: "production",
    version,
    round: version - 1,
    run: { namespace: "ml", name: "clip", uid: "u" },
    uri: `s3://models/clip/v${version}/`,
    uris: { imageEncoder: `s3://models/clip/v${version}/image_encoder.onnx` },
    metrics: { "retrieval.id.meanRecallAt1": 0.5 },
    promotedAt: "2026-01-01T00:00:00Z",
    pinned: false,
  };
  return { run: { namespace: "ml", name: "clip", uid: "u" }, pointer, pointerUri: "s3://models/clip/production.json" };
};

const ISVC = `apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: clip
spec:
  predictor:
    model:
      modelFormat:
        name: onnx
      storageUri: s3://models/clip/v1/ # {"$ticclip": "ml:clip:uri"}
`;

const spec = { path: "serving/model.yaml", markerFiles: ["serving/isvc.yaml"] };
const credentials = (): GitCredentials => ({
  auth: { username: server.username, password: server.password },
  ca: server.ca,
});
function request(repo: string, version: number, o: Partial<GitSyncRequest> = {}): GitSyncRequest {
  return {
    url: server.url(repo),
    branch: "main",
    paths: [spec.path, ...spec.markerFiles],
    plan: (files) => planGitChange(spec, files, model(version)),
    message: `promote v${version}`,
    author: { name: "continual-clip-operator", email: "op@ticclip.dev" },
    credentials: credentials(),
    ...o,
  };
}
const git = new GitRepositories({ backoffMs: 10 });

describe("GitRepositories.sync", () => {
  test("a change is one commit with both files; the same apply again is none", async () => {
    server.createRepo("one", { "serving/isvc.yaml": ISVC, "README.md": "serving\n" });
    const before = server.requests.length;
    const r = await git.sync(request("one", 2));
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.ok(r.ok && r.commit);
    assert.equal(r.ok && r.attempts, 1);
    // depth-1 fetch (refs + pack) and push (refs + pack): no 401 round trips.
    assert.equal(r.ok && r.requests, 4);
    assert.equal(server.requests.length - before, 4);
    const log = server.log("one");
    assert.equal(log.length, 2);
    assert.equal(log[0]!.oid, r.ok ? r.commit : "");
    assert.equal(log[0]!.message, "promote v2");
    assert.equal(log[0]!.author, "continual-clip-operator");
    assert.equal(server.show("one", "main", "serving/model.yaml"), renderModelFile(model(2)));
    assert.match(server.show("one", "main", "serving/isvc.yaml")!, /storageUri: s3:\/\/models\/clip\/v2\/ # /);
    assert.equal(server.show("one", "main", "README.md"), "serving\n", "other files are kept");

    const again = await git.sync(request("one", 2));
    assert.deepEqual(again.ok && [again.commit, again.head, again.requests], [undefined, log[0]!.oid, 2]);
    assert.equal(server.log("one").length, 2, "no second commit");
  });

  test("another writer pushing between our fetch and our push: retried, both changes survive", async () => {
    server.createRepo("race", { "serving/isvc.yaml": ISVC });
    server.beforeNextPush(() => {
      server.commit("race", "main", { "apps/other.yaml": "kind: Other\n" }, "someone else's change");
    });
    const r = await git.sync(request("race", 3));
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.ok && r.attempts, 2);
    const log = server.log("race").map((c) => c.message);
    assert.deepEqual(log, ["promote v3", "someone else's change", "initial commit"]);
    assert.equal(server.show("race", "main", "apps/other.yaml"), "kind: Other\n");
    assert.equal(server.show("race", "main", "serving/model.yaml"), renderModelFile(model(3)));
  });

  test("another writer making the same change meanwhile: nothing left to commit", async () => {
    server.createRepo("same", { "serving/isvc.yaml": ISVC });
    const isvc = planGitChange(
      { markerFiles: ["serving/isvc.yaml"] },
      new Map([["serving/isvc.yaml", ISVC]]),
      model(4),
    );
    assert.equal(isvc.kind, "write");
    server.beforeNextPush(() => {
      const files = Object.fromEntries(isvc.kind === "write" ? isvc.files.map((f) => [f.path, f.content]) : []);
      server.commit("same", "main", { ...files, "serving/model.yaml": renderModelFile(model(4)) }, "by hand");
    });
    const r = await git.sync(request("same", 4));
    assert.deepEqual(r.ok && [r.commit, r.attempts], [undefined, 2]);
    assert.deepEqual(
      server.log("same").map((c) => c.message),
      ["by hand", "initial commit"],
    );
  });

  test("pushBranch: created from branch, then built on; branch untouched", async () => {
    server.createRepo("pr", { "serving/isvc.yaml": ISVC });
    const first = await git.sync(request("pr", 2, { pushBranch: "ticclip/clip" }));
    assert.ok(first.ok && first.commit, JSON.stringify(first));
    const second = await git.sync(request("pr", 3, { pushBranch: "ticclip/clip" }));
    assert.ok(second.ok && second.commit);
    assert.deepEqual(server.branches("pr"), ["main", "ticclip/clip"]);
    assert.equal(server.log("pr", "main").length, 1);
    assert.deepEqual(
      server.log("pr", "ticclip/clip").map((c) => c.message),
      ["promote v3", "promote v2", "initial commit"],
    );
  });

  const failures: {
    name: string;
    o: (repo: string) => Partial<GitSyncRequest>;
    files?: Record<string, string>;
    reason: string;
    field: string;
    match: RegExp;
  }[] = [
    {
      name: "wrong password",
      o: () => ({
        credentials: { auth: { username: server.username, password: "wrong-password-123" }, ca: server.ca },
      }),
      reason: "GitAuthFailed",
      field: "secretRef",
      match: /refused the credentials to fetch \(HTTP 401/,
    },
    {
      name: "no credentials",
      o: () => ({ credentials: { ca: server.ca } }),
      reason: "GitAuthFailed",
      field: "secretRef",
      match: /without credentials.*set secretRef/,
    },
    {
      name: "missing branch",
      o: () => ({ branch: "release" }),
      reason: "GitBranchNotFound",
      field: "branch",
      match: /branch release does not exist/,
    },
    {
      name: "no such repository",
      o: () => ({ url: server.url("nope") }),
      reason: "GitRepositoryNotFound",
      field: "url",
      match: /HTTP 404/,
    },
    {
      name: "an untrusted certificate",
      o: () => ({ credentials: { auth: { username: server.username, password: server.password } } }),
      reason: "GitTLSFailed",
      field: "url",
      match: /not trusted .*ca\.crt/,
    },
    {
      name: "an unparseable marker file",
      o: () => ({}),
      files: { "serving/isvc.yaml": "spec: [oops\n" },
      reason: "GitFileUnparseable",
      field: "markerFiles",
      match: /serving\/isvc\.yaml is not YAML/,
    },
    {
      name: "an owned file edited into something else",
      o: () => ({}),
      files: { "serving/isvc.yaml": ISVC, "serving/model.yaml": "kind: Deployment\n" },
      reason: "GitFileNotOwned",
      field: "path",
      match: /never overwritten/,
    },
    {
      name: "nothing listening",
      o: () => ({ url: "https://127.0.0.1:9/x.git" }),
      reason: "GitUnreachable",
      field: "url",
      match: /ECONNREFUSED/,
    },
  ];
  for (const [i, f] of failures.entries()) {
    test(`fails with a reason, never a commit: ${f.name}`, async () => {
      const repo = `fail-${i}`;
      server.createRepo(repo, f.files ?? { "serving/isvc.yaml": ISVC });
      const r = await git.sync(request(repo, 2, f.o(repo)));
      assert.equal(r.ok, false);
      if (r.ok) return;
      assert.equal(r.reason, f.reason, r.message);
      assert.equal(r.field, f.field);
      assert.match(r.message, f.match);
      assert.equal(r.message.includes(server.password), false, "no password in the message");
      assert.equal(r.message.includes("wrong-password-123"), false);
      assert.equal(server.log(repo).length, 1, "nothing pushed");
    });
  }
});
