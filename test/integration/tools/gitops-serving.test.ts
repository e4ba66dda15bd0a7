// docs/gitops.md's serving examples, checked by the real tools: the operator's own renderer writes
// the model file and updates the markers, a real kustomize (built from its Go module) builds the
// folder, and the API server checks the result against KServe's InferenceService CRD (from KServe's
// Go module) with kubectl apply --dry-run=server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import YAML from "yaml";
import type { AliasPointer } from "../../../operator/api/promotion.ts";
import { renderModelFile, updateMarkers, type GitModel } from "../../../operator/promotion/git-target.ts";
import { createNamespace, kubectl, kubectlOk, REPO_ROOT, waitEstablished } from "../../support/cluster.ts";
import { ok, toolPath } from "./tools.ts";

const SERVING = path.join(REPO_ROOT, "docs/gitops/serving");

/** The model of docs/gitops/serving/model.yaml: run ml/clip, alias production at version n. */
function model(n: number): GitModel {
  const uri = `s3://models/clip/v${n}/`;
  const pointer: AliasPointer = {
    schemaVersion: 1,
    alias: "production",
    version: n,
    round: n + 2,
    run: { namespace: "ml", name: "clip", uid: "u" },
    uri,
    uris: {
      imageEncoder: `${uri}image_encoder.onnx`,
      textEncoder: `${uri}text_encoder.onnx`,
      modelJson: `${uri}model.json`,
      checkpoint: `${uri}checkpoint.pt`,
      eval: `${uri}eval.json`,
    },
    metrics: { "retrieval.id.meanRecallAt1": 0.4213, "retrieval.backward.meanRecallAt1": 0.3977 },
    promotedAt: "2026-05-01T12:00:00.000Z",
    pinned: false,
  };
  return { run: { namespace: "ml", name: "clip", uid: "u" }, pointer, pointerUri: "s3://models/clip/production.json" };
}

/** The serving folder after the operator's commit for version n. */
function servingAt(n: number): string {
  const dir = mkdtempSync(path.join(tmpdir(), "ticclip-serving-"));
  cpSync(SERVING, dir, { recursive: true });
  writeFileSync(path.join(dir, "model.yaml"), renderModelFile(model(n)));
  const isvc = path.join(dir, "inferenceservice.yaml");
  const updated = updateMarkers("inferenceservice.yaml", readFileSync(isvc, "utf8"), model(n));
  assert.equal(updated.kind, "write", JSON.stringify(updated));
  if (updated.kind === "write") writeFileSync(isvc, updated.content);
  return dir;
}

const build = (dir: string) => ok(toolPath("kustomize"), ["build", dir]);

test("docs/gitops/serving/model.yaml is what the operator writes", () => {
  assert.equal(readFileSync(path.join(SERVING, "model.yaml"), "utf8"), renderModelFile(model(3)));
  const isvc = readFileSync(path.join(SERVING, "inferenceservice.yaml"), "utf8");
  assert.deepEqual(updateMarkers("inferenceservice.yaml", isvc, model(3)), { kind: "unchanged" });
});

test("a promotion's commit changes what kustomize builds: both servers get the new version, the model file is not applied", () => {
  const docs = YAML.parseAllDocuments(build(servingAt(4))).map((d) => d.toJS());
  assert.deepEqual(
    docs.map((d) => d.kind),
    ["Deployment", "InferenceService"],
  );
  const [deployment, isvc] = docs;
  const env = Object.fromEntries(
    deployment.spec.template.spec.containers[0].env.map((e: { name: string; value: string }) => [e.name, e.value]),
  );
  assert.deepEqual(env, {
    MODEL_URI: "s3://models/clip/v4/",
    IMAGE_ENCODER_URI: "s3://models/clip/v4/image_encoder.onnx",
    TEXT_ENCODER_URI: "s3://models/clip/v4/text_encoder.onnx",
  });
  assert.equal(deployment.spec.template.metadata.labels["ticclip.dev/version"], "4");
  assert.deepEqual(isvc.spec.predictor.containers[0].env, [{ name: "STORAGE_URI", value: "s3://models/clip/v4/" }]);
  assert.equal(isvc.metadata.labels["ticclip.dev/version"], "4");
  assert.ok(docs.every((d) => d.metadata.namespace === "serving"));
});

test("the built InferenceService and Deployment pass the API server with KServe's CRD (dry run)", async () => {
  kubectlOk(["apply", "--server-side", "--force-conflicts", "-f", toolPath("kserve_crd")]);
  waitEstablished("inferenceservices.serving.kserve.io");
  // The folder deploys to namespace serving; here, to a namespace of this test.
  const ns = createNamespace("serving");
  const built = build(servingAt(4)).replaceAll("namespace: serving\n", `namespace: ${ns}\n`);
  const out = kubectlOk(["apply", "--dry-run=server", "-f", "-"], built);
  assert.match(out, /deployment.apps\/clip-server (created|configured|unchanged) \(server dry run\)/);
  assert.match(out, /inferenceservice.serving.kserve.io\/clip (created|configured|unchanged) \(server dry run\)/);
  // The CRD's schema is really applied: a field KServe does not know is refused.
  const bad = built.replace("minReplicas: 1", "minReplicas: 1\n    replicaz: 3");
  const refused = kubectl(["apply", "--dry-run=server", "--validate=strict", "-f", "-"], bad);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /replicaz/);
});

test("the Argo CD Application and the Flux Kustomization deploy that folder", () => {
  const app = YAML.parse(readFileSync(path.join(REPO_ROOT, "docs/gitops/serving-argocd-application.yaml"), "utf8"));
  const flux = YAML.parseAllDocuments(
    readFileSync(path.join(REPO_ROOT, "docs/gitops/serving-flux-kustomization.yaml"), "utf8"),
  ).map((d) => d.toJS());
  const ks = flux.find((d) => d.kind === "Kustomization");
  const repo = flux.find((d) => d.kind === "GitRepository");
  assert.equal(app.spec.source.path, "serving/clip");
  assert.equal(ks.spec.path, "./serving/clip");
  assert.equal(repo.spec.url, app.spec.source.repoURL);
  assert.equal(ks.spec.sourceRef.name, repo.metadata.name);
  // The same repository and folder as the run of examples/complete.yaml writes to.
  const run = YAML.parse(readFileSync(path.join(REPO_ROOT, "examples/complete.yaml"), "utf8"));
  assert.equal(run.spec.promotion.git.url, repo.spec.url);
  assert.equal(path.dirname(run.spec.promotion.git.path), app.spec.source.path);
});
