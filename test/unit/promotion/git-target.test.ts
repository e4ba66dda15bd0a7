import { describe, test } from "node:test";
import assert from "node:assert/strict";
import YAML from "yaml";
import type { AliasPointer } from "../../../operator/api/promotion.ts";
import { DEFAULT_COMMIT_MESSAGE } from "../../../operator/api/git-target.ts";
import {
  LOCAL_CONFIG_ANNOTATION,
  planGitChange,
  renderCommitMessage,
  renderModelFile,
  updateMarkers,
  updateModelFile,
  type GitModel,
} from "../../../operator/promotion/git-target.ts";

const pointer = (version: number, o: Partial<AliasPointer> = {}): AliasPointer => ({
  schemaVersion: 1,
  alias: "production",
  version,
  round: version + 1,
  run: { namespace: "ml", name: "clip", uid: "uid-1" },
  uri: `s3://models/clip/v${version}/`,
  uris: {
    imageEncoder: `s3://models/clip/v${version}/image_encoder.onnx`,
    textEncoder: `s3://models/clip/v${version}/text_encoder.onnx`,
    modelJson: `s3://models/clip/v${version}/model.json`,
    checkpoint: `s3://models/clip/v${version}/checkpoint.pt`,
  },
  metrics: { "retrieval.id.meanRecallAt1": 0.4213, "retrieval.backward.meanRecallAt1": 0.38 },
  promotedAt: "2026-01-01T00:00:00Z",
  pinned: false,
  ...o,
});
const model = (version: number, o: Partial<AliasPointer> = {}): GitModel => ({
  run: { namespace: "ml", name: "clip", uid: "uid-1" },
  pointer: pointer(version, o),
  pointerUri: "s3://models/clip/production.json",
});

describe("the owned model file", () => {
  test("is a local-config ConfigMap with the promoted version, round, URIs and metrics", () => {
    const doc = YAML.parse(renderModelFile(model(3)));
    assert.equal(doc.kind, "ConfigMap");
    assert.equal(doc.metadata.name, "clip-model");
    assert.equal(doc.metadata.annotations[LOCAL_CONFIG_ANNOTATION], "true");
    assert.equal(doc.metadata.annotations["ticclip.dev/run"], "ml/clip");
    assert.equal(doc.data.version, "3");
    assert.equal(doc.data.round, "4");
    assert.equal(doc.data.uri, "s3://models/clip/v3/");
    assert.equal(doc.data.imageEncoderUri, "s3://models/clip/v3/image_encoder.onnx");
    assert.equal(doc.data.modelJsonUri, "s3://models/clip/v3/model.json");
    assert.equal(JSON.parse(doc.data["metrics.json"])["retrieval.id.meanRecallAt1"], 0.4213);
    assert.equal(doc.data["pointer.json"], undefined);
  });

  const cases: { name: string; current: string | undefined; want: string }[] = [
    { name: "absent: written", current: undefined, want: "write" },
    { name: "says the same: unchanged", current: renderModelFile(model(3)), want: "unchanged" },
    {
      name: "says the same, reformatted by hand: unchanged",
      current: YAML.stringify(YAML.parse(renderModelFile(model(3))), { indent: 4 }),
      want: "unchanged",
    },
    { name: "an older version: rewritten", current: renderModelFile(model(2)), want: "write" },
    { name: "broken YAML", current: "data:\n  version: [3\n", want: "GitFileUnparseable" },
    {
      name: "another run's file",
      current: renderModelFile({ ...model(3), run: { namespace: "ml", name: "other", uid: "u2" } }),
      want: "GitFileNotOwned",
    },
    { name: "a Deployment", current: "apiVersion: apps/v1\nkind: Deployment\n", want: "GitFileNotOwned" },
    { name: "two documents", current: `${renderModelFile(model(3))}---\nkind: ConfigMap\n`, want: "GitFileNotOwned" },
    { name: "empty", current: "", want: "GitFileNotOwned" },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = updateModelFile("serving/model.yaml", c.current, model(3));
      assert.equal(r.kind === "problem" ? r.reason : r.kind, c.want);
      if (r.kind === "problem") {
        assert.equal(r.field, "path");
        assert.match(r.message, /serving\/model\.yaml/);
      }
      if (r.kind === "write") assert.equal(r.content, renderModelFile(model(3)));
    });
  }
});

const MANIFEST = `apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: clip
  annotations:
    ticclip.dev/version: "2" # {"$ticclip": "ml:clip:version"}
spec:
  predictor:
    model:
      modelFormat:
        name: onnx
      storageUri: s3://models/clip/v2/ # {"$ticclip": "ml:clip:uri"}
      args:
        - --image-encoder
        - 's3://models/clip/v2/image_encoder.onnx' #{"$ticclip":"ml:clip:imageEncoderUri"}
      env:
        - name: OTHER_MODEL
          value: s3://models/other/v9/ # {"$ticclip": "ml:other:uri"}
`;

describe("marker updates", () => {
  test("replace the value of every line with this run's marker, keeping quotes and comments", () => {
    const r = updateMarkers("isvc.yaml", MANIFEST, model(3));
    assert.equal(r.kind, "write");
    const text = r.kind === "write" ? r.content : "";
    assert.match(text, /ticclip.dev\/version: "3" # \{"\$ticclip": "ml:clip:version"\}\n/);
    assert.match(text, /storageUri: s3:\/\/models\/clip\/v3\/ # \{"\$ticclip": "ml:clip:uri"\}\n/);
    assert.match(text, /- 's3:\/\/models\/clip\/v3\/image_encoder.onnx' #\{"\$ticclip":"ml:clip:imageEncoderUri"\}\n/);
    assert.match(text, /value: s3:\/\/models\/other\/v9\/ # /, "another run's marker is left alone");
    const doc = YAML.parse(text);
    assert.equal(doc.spec.predictor.model.storageUri, "s3://models/clip/v3/");
    assert.equal(doc.metadata.annotations["ticclip.dev/version"], "3");
    // Only the marked values changed.
    assert.equal(text.split("\n").length, MANIFEST.split("\n").length);
    assert.equal(updateMarkers("isvc.yaml", text, model(3)).kind, "unchanged", "a second apply changes nothing");
  });

  test("a plain version stays a plain scalar; a value YAML would read otherwise is quoted", () => {
    const r = updateMarkers(
      "v.yaml",
      'v: 2 # {"$ticclip": "ml:clip:version"}\np: x # {"$ticclip": "ml:clip:pinned"}\n',
      model(3, { pinned: true }),
    );
    assert.equal(
      r.kind === "write" && r.content,
      'v: 3 # {"$ticclip": "ml:clip:version"}\np: "true" # {"$ticclip": "ml:clip:pinned"}\n',
    );
  });

  const problems: { name: string; text: string | undefined; reason: string; match: RegExp }[] = [
    { name: "file absent", text: undefined, reason: "GitFileNotFound", match: /m\.yaml does not exist/ },
    {
      name: "markers removed by hand",
      text: "storageUri: s3://models/clip/v2/\n",
      reason: "GitMarkerNotFound",
      match: /no marker of this run: add # \{"\$ticclip": "ml:clip:uri"\}/,
    },
    {
      name: "only another run's markers",
      text: 'storageUri: s3://x/ # {"$ticclip": "ml:other:uri"}\n',
      reason: "GitMarkerNotFound",
      match: /no marker of this run/,
    },
    {
      name: "an unknown field",
      text: 'a: b # {"$ticclip": "ml:clip:tag"}\n',
      reason: "GitMarkerInvalid",
      match: /m\.yaml:1: marker field "tag" is not one of/,
    },
    {
      name: "a block scalar",
      text: 'a: | # {"$ticclip": "ml:clip:uri"}\n  s3://x/\n',
      reason: "GitMarkerInvalid",
      match: /m\.yaml:1: a marker must end a line/,
    },
    {
      name: "no value",
      text: 'x:\n  storageUri: # {"$ticclip": "ml:clip:uri"}\n',
      reason: "GitMarkerInvalid",
      match: /m\.yaml:2: a marker must end/,
    },
    {
      name: "a flow mapping",
      text: 'a: {b: c} # {"$ticclip": "ml:clip:uri"}\n',
      reason: "GitMarkerInvalid",
      match: /m\.yaml:1:/,
    },
    { name: "broken YAML", text: "a: [1\n", reason: "GitFileUnparseable", match: /m\.yaml is not YAML/ },
  ];
  for (const p of problems) {
    test(`cannot update: ${p.name}`, () => {
      const r = updateMarkers("m.yaml", p.text, model(3));
      assert.equal(r.kind, "problem");
      if (r.kind !== "problem") return;
      assert.equal(r.reason, p.reason);
      assert.equal(r.field, "markerFiles");
      assert.match(r.message, p.match);
    });
  }
});

describe("planGitChange", () => {
  const spec = { path: "serving/model.yaml", markerFiles: ["serving/isvc.yaml"] };
  test("writes every file that changed, in one change", () => {
    const r = planGitChange(spec, new Map([["serving/isvc.yaml", MANIFEST]]), model(3));
    assert.equal(r.kind, "write");
    assert.deepEqual(r.kind === "write" && r.files.map((f) => f.path), ["serving/model.yaml", "serving/isvc.yaml"]);
  });
  test("nothing when every file already says it", () => {
    const isvc = updateMarkers("serving/isvc.yaml", MANIFEST, model(3));
    const files = new Map([
      ["serving/model.yaml", renderModelFile(model(3))],
      ["serving/isvc.yaml", isvc.kind === "write" ? isvc.content : ""],
    ]);
    assert.deepEqual(planGitChange(spec, files, model(3)), { kind: "unchanged" });
  });
  test("one file that cannot be updated stops the whole change", () => {
    const r = planGitChange(spec, new Map([["serving/isvc.yaml", "kind: x\n"]]), model(3));
    assert.equal(r.kind === "problem" && r.reason, "GitMarkerNotFound");
  });
});

describe("commit message", () => {
  test("the default names run, round, version and the gate results", () => {
    const gates = [{ metric: "retrieval.id.meanRecallAt1", observed: 0.4213, threshold: 0.3, passed: true }];
    const text = renderCommitMessage(DEFAULT_COMMIT_MESSAGE, model(3), gates);
    assert.equal(text.split("\n")[0], "clip: promote production to v3 (round 4)");
    assert.match(text, /ContinualClipRun ml\/clip\nModel: s3:\/\/models\/clip\/v3\/\n/);
    assert.match(text, /Gates:\n- retrieval.id.meanRecallAt1: 0.4213 \(threshold 0.3\) passed\n/);
    assert.match(text, /Metrics:\n- retrieval.backward.meanRecallAt1: 0.38\n- retrieval.id.meanRecallAt1: 0.4213\n/);
  });
  test("a pinned alias is a roll back; a template without spaces works alike", () => {
    const text = renderCommitMessage("{{ action }} {{run}} v{{version}}: {{gates}}", model(1, { pinned: true }), []);
    assert.equal(text, "roll back ml/clip v1: - none recorded");
  });
});
