// Generates test/tables/invalid-runs.json from the zod schema: for every field of the CRD at least
// one invalid value (wrong type, out of range, breaking the pattern or enum, a required field
// removed), plus a hand-written case for every CEL rule (cross-field), each with the field path the
// rejection must name. test/integration/crd-validation-table.test.ts sends each case to the real API
// server and test/unit/api/invalid-table.test.ts to zod: one source, two enforcers, same verdicts.
// Run: npm run gen (writes the table), a unit test fails when it is stale.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import YAML from "yaml";
import { buildCrd, REPO_ROOT, writeIfChanged } from "../../operator/api/gen-artifacts.ts";
import type { CelRule } from "../../operator/api/cel.ts";
import { nameList, strategiesWhere } from "../../operator/api/replay-strategies.ts";

type Json = Record<string, any>;
export type Key = string | number;
/** One invalid manifest: the base with `set` applied and `delete` removed. */
export type InvalidCase = {
  name: string;
  kind: "type" | "range" | "length" | "pattern" | "enum" | "required" | "items" | "cel";
  /** The field the rejection must name, as the API server writes it: spec.a.b[0].c, spec.m[key]. */
  field: string;
  set?: Array<{ path: Key[]; value: unknown }>;
  delete?: Key[][];
  /** Part of the message, for CEL rules. */
  says?: string;
};

export const BASE_MANIFEST = "examples/complete.yaml";
export const TABLE_PATH = path.join(REPO_ROOT, "test/tables/invalid-runs.json");

/** The field path as the API server prints it: list indexes in brackets, map keys after a dot. */
export function fieldPath(keys: Key[]): string {
  return keys
    .map((k) => (typeof k === "number" ? `[${k}]` : `.${k}`))
    .join("")
    .replace(/^\./, "");
}

export function applyCase(base: Json, c: InvalidCase): Json {
  const doc = structuredClone(base);
  for (const p of c.delete ?? []) {
    const parent = p.slice(0, -1).reduce((o: any, k) => o[k], doc);
    if (Array.isArray(parent)) parent.splice(p.at(-1) as number, 1);
    else delete parent[p.at(-1)!];
  }
  for (const { path: p, value } of c.set ?? []) {
    const parent = p.slice(0, -1).reduce((o: any, k) => o[k], doc);
    parent[p.at(-1)!] = structuredClone(value);
  }
  return doc;
}

const at = (obj: unknown, keys: Key[]): unknown => keys.reduce((o: any, k) => (o == null ? undefined : o[k]), obj);

// Strings tried, in order, for a value that breaks a pattern but keeps within the length bounds.
const PATTERN_BREAKERS = ["Not Valid!", "-", "UPPER_case", "/leading", "a..b", "x y/", ".", "é", "{{unknown}}"];

/** Cases generated from one schema node at `keys` (its value in the base is `value`). */
function fieldCases(schema: Json, keys: Key[], field: string, value: unknown, out: InvalidCase[]): void {
  const set = (v: unknown) => [{ path: keys, value: v }];
  const add = (kind: InvalidCase["kind"], what: string, v: unknown) =>
    out.push({ name: `${field}: ${what}`, kind, field, set: set(v) });

  if (schema["x-kubernetes-int-or-string"]) {
    add("type", "a boolean where a quantity is expected", true);
    add("pattern", "a quantity in words", "lots");
    return;
  }
  if (schema["x-kubernetes-preserve-unknown-fields"]) {
    add("type", "a string where an object is expected", "anything");
    return;
  }
  switch (schema.type) {
    case "integer":
    case "number": {
      add("type", "a string where a number is expected", "12");
      const step = schema.type === "integer" ? 1 : 0.5;
      if (schema.minimum !== undefined) {
        const v = schema.exclusiveMinimum ? schema.minimum : schema.minimum - step;
        add("range", `${v}, below the minimum ${schema.minimum}`, v);
      }
      if (schema.maximum !== undefined)
        add("range", `${schema.maximum + step}, above the maximum ${schema.maximum}`, schema.maximum + step);
      return;
    }
    case "boolean":
      add("type", "a string where a boolean is expected", "yes");
      return;
    case "string": {
      add("type", "a number where a string is expected", 42);
      if (schema.enum) {
        add("enum", "a value outside the enum", "NotAnOption");
        return;
      }
      if (schema.minLength) add("length", "an empty string", "");
      if (schema.maxLength !== undefined)
        add("length", `${schema.maxLength + 1} characters`, "a".repeat(schema.maxLength + 1));
      if (schema.pattern) {
        const re = new RegExp(schema.pattern);
        const min = schema.minLength ?? 0;
        const max = schema.maxLength ?? Infinity;
        const bad = PATTERN_BREAKERS.find((s) => !re.test(s) && s.length >= min && s.length <= max);
        if (bad === undefined) throw new Error(`no pattern breaker for ${field} (${schema.pattern})`);
        add("pattern", `${JSON.stringify(bad)} does not match the pattern`, bad);
      }
      return;
    }
    case "array": {
      add("type", "a string where a list is expected", "item");
      const list = value as unknown[] | undefined;
      if (schema.minItems) add("items", "an empty list", []);
      if (schema.maxItems !== undefined && list?.length) {
        add(
          "items",
          `${schema.maxItems + 1} items`,
          Array.from({ length: schema.maxItems + 1 }, (_, i) => list[i % list.length]),
        );
      }
      if (list?.length) fieldCases(schema.items, [...keys, 0], `${field}[0]`, list[0], out);
      else throw new Error(`${BASE_MANIFEST} needs an item in ${field} so its items get cases`);
      return;
    }
    case "object": {
      add("type", "a string where an object is expected", "object");
      walkObject(schema, keys, field, value as Json | undefined, out);
      return;
    }
    default:
      throw new Error(`no cases for ${field}: ${JSON.stringify(schema).slice(0, 120)}`);
  }
}

function walkObject(schema: Json, keys: Key[], field: string, value: Json | undefined, out: InvalidCase[]): void {
  if (value === undefined || value === null)
    throw new Error(`${BASE_MANIFEST} must set ${field} so its fields get cases`);
  for (const name of schema.required ?? []) {
    out.push({
      name: `${field}.${name}: required, removed`,
      kind: "required",
      field: `${field}.${name}`,
      delete: [[...keys, name]],
    });
  }
  for (const [name, child] of Object.entries((schema.properties ?? {}) as Record<string, Json>)) {
    const childValue = value[name];
    const childField = `${field}.${name}`;
    // Scalars may be absent from the base (the case adds them); lists and objects must be there.
    const container = child.type === "object" || child.type === "array";
    if (childValue === undefined && container)
      throw new Error(`${BASE_MANIFEST} must set ${childField} so it gets cases`);
    if (childValue === null) {
      // A nullable field left null in the base: check the type with a value of its own.
      out.push({
        name: `${childField}: a string where a number is expected`,
        kind: "type",
        field: childField,
        set: [{ path: [...keys, name], value: "12" }],
      });
      continue;
    }
    fieldCases(child, [...keys, name], childField, childValue, out);
  }
  if (typeof schema.additionalProperties === "object") {
    const first = Object.keys(value)[0];
    if (first === undefined) throw new Error(`${BASE_MANIFEST} needs an entry in ${field} so its values get cases`);
    fieldCases(schema.additionalProperties, [...keys, first], `${field}.${first}`, value[first], out);
    if (schema.maxProperties !== undefined) {
      const many = Object.fromEntries(
        Array.from({ length: schema.maxProperties + 1 }, (_, i) => [`k${i}`, value[first]]),
      );
      out.push({
        name: `${field}: ${schema.maxProperties + 1} entries`,
        kind: "items",
        field,
        set: [{ path: keys, value: many }],
      });
    }
  }
}

/** Every CEL rule of the CRD, with the path of the value it is attached to. */
export function celRules(schema: Json, keys: Key[] = []): Array<{ at: string; keys: Key[]; rule: CelRule }> {
  const found: Array<{ at: string; keys: Key[]; rule: CelRule }> = [];
  for (const rule of (schema["x-kubernetes-validations"] ?? []) as CelRule[])
    found.push({ at: fieldPath(keys), keys, rule });
  for (const [name, child] of Object.entries((schema.properties ?? {}) as Record<string, Json>))
    found.push(...celRules(child, [...keys, name]));
  if (schema.items) found.push(...celRules(schema.items, [...keys, 0]));
  if (typeof schema.additionalProperties === "object")
    found.push(...celRules(schema.additionalProperties, [...keys, "*"]));
  return found;
}

// ---- hand-written cross-field cases: one or more per CEL rule (checked below) ----

const S = (...keys: Key[]): Key[] => ["spec", ...keys];
const set = (...pairs: Array<[Key[], unknown]>) => pairs.map(([p, value]) => ({ path: p, value }));
const toleration = (owner: Key[]) => [...owner, "tolerations", 0];

function celCases(): InvalidCase[] {
  const cases: InvalidCase[] = [];
  const cel = (name: string, field: string, says: string, s: Array<{ path: Key[]; value: unknown }>, del?: Key[][]) =>
    cases.push({ name, kind: "cel", field, says, set: s, ...(del ? { delete: del } : {}) });

  cel("run name with a dot", "metadata.name", "no '.'", set([["metadata", "name"], "complete.b32"]));
  cel(
    "multi-node run whose name starts with a digit",
    "metadata.name",
    "must start with a letter",
    set([["metadata", "name"], "2024-b32"]),
  );
  cel(
    "multi-node run whose pod hostnames would exceed 63",
    "metadata.name",
    "at most 46 characters",
    set([["metadata", "name"], "b".repeat(47)]),
  );
  cel(
    "nvidia.com/gpu in trainer resources",
    "spec.trainer.resources",
    "GPUs come from gpusPerNode",
    set([S("trainer", "resources", "limits", "nvidia.com/gpu"), 8]),
  );
  for (const loc of ["source", "artifacts", "promotion"]) {
    cel(
      `${loc} prefix with a '..' segment`,
      `spec.${loc}.s3.prefix`,
      "'..' segments",
      set([S(loc, "s3", "prefix"), "runs/../other/"]),
    );
  }
  cel(
    "an endpoint with credentials in it",
    "spec.source.s3.endpoint",
    "must not carry credentials",
    set([S("source", "s3", "endpoint"), "https://AKIAEXAMPLE:wJalrXUtnFEMI@s3.eu-west-1.amazonaws.com"]),
  );
  cel(
    "poll interval of 100ms (a hot loop)",
    "spec.source.pollInterval",
    "between 1s and 24h",
    set([S("source", "pollInterval"), "100ms"]),
  );
  cel(
    "poll interval of 48h",
    "spec.source.pollInterval",
    "between 1s and 24h",
    set([S("source", "pollInterval"), "48h"]),
  );
  cel(
    "stall timeout of 10s (shorter than the trainer's progress interval)",
    "spec.trainer.stallTimeout",
    "between 1m and 168h",
    set([S("trainer", "stallTimeout"), "10s"]),
  );
  cel(
    "bufferSamples with Sequential replay",
    "spec.strategy.bufferSamples",
    `applies only to replay ${nameList(
      strategiesWhere((t) => t.data === "buffer"),
      "or",
    )}`,
    set([S("strategy", "replay"), "Sequential"]),
  );
  cel(
    "Oracle warm-starting from the promoted model",
    "spec.strategy.warmStartFrom",
    "start from scratch",
    set(
      [S("strategy", "replay"), "Oracle"],
      [S("strategy", "bufferSamples"), 0],
      [S("strategy", "merge", "mode"), "None"],
    ),
  );
  cel(
    "weight-space merging on Restart (trained from scratch)",
    "spec.strategy.merge.mode",
    "applies only to warm-started replay",
    set(
      [S("strategy", "replay"), "Restart"],
      [S("strategy", "bufferSamples"), 0],
      [S("strategy", "warmStartFrom"), "PreviousRound"],
    ),
  );
  for (const owner of [S("trainer"), S("evaluation", "runner")]) {
    const o = fieldPath(owner);
    cel(
      `${o}: toleration key that is not a qualified name`,
      `${o}.tolerations[0].key`,
      "qualified name",
      set([[...toleration(owner), "key"], "bad key!"]),
    );
    cel(
      `${o}: toleration without key and operator Equal`,
      `${o}.tolerations[0].operator`,
      "operator must be Exists",
      set([[...toleration(owner), "key"], ""], [[...toleration(owner), "operator"], "Equal"]),
    );
    cel(
      `${o}: toleration Exists with a value`,
      `${o}.tolerations[0].value`,
      "value must be empty",
      set([[...toleration(owner), "operator"], "Exists"], [[...toleration(owner), "value"], "yes"]),
    );
    cel(
      `${o}: tolerationSeconds without NoExecute`,
      `${o}.tolerations[0].effect`,
      "needs effect NoExecute",
      set([[...toleration(owner), "effect"], "NoSchedule"], [[...toleration(owner), "tolerationSeconds"], 60]),
    );
    cel(
      `${o}: node selector key with a space`,
      `${o}.nodeSelector`,
      "qualified names",
      set([[...owner, "nodeSelector"], { "gpu type": "a100" }]),
    );
    cel(
      `${o}: node selector key with a 64-character name`,
      `${o}.nodeSelector`,
      "qualified names",
      set([[...owner, "nodeSelector"], { ["x".repeat(64)]: "a100" }]),
    );
    cel(
      `${o}: a memory request above its limit (2Gi > 1500Mi)`,
      `${o}.resources.requests`,
      "must not exceed the limit",
      set(
        [[...owner, "resources", "requests", "memory"], "2Gi"],
        [[...owner, "resources", "limits", "memory"], "1500Mi"],
      ),
    );
    cel(
      `${o}: a CPU request of 5 above a limit of 4500m`,
      `${o}.resources.requests`,
      "must not exceed the limit",
      set([[...owner, "resources", "requests", "cpu"], 5], [[...owner, "resources", "limits", "cpu"], "4500m"]),
    );
    for (const list of ["requests", "limits"]) {
      cel(
        `${o}: resource name with a space in ${list}`,
        `${o}.resources.${list}`,
        "qualified names",
        set([[...owner, "resources", list], { "gpu memory": "1Gi" }]),
      );
    }
  }
  cel(
    "gate with neither value nor maxRegression",
    "spec.evaluation.gates[1]",
    "needs value (with op) or maxRegression",
    set([S("evaluation", "gates", 1), { metric: "retrieval.id.meanRecallAt1" }]),
  );
  cel(
    "gate with op but no value",
    "spec.evaluation.gates[1].op",
    "op and value go together",
    set([S("evaluation", "gates", 1, "op"), ">="]),
  );
  cel(
    "cuda evaluation without GPUs",
    "spec.evaluation.runner.gpus",
    "cuda needs gpus > 0",
    set([S("evaluation", "runner", "gpus"), 0]),
  );
  cel(
    "in-process evaluation asking for GPUs",
    "spec.evaluation.runner.gpus",
    "gpus must be 0",
    set([S("evaluation", "runner", "mode"), "InProcess"], [S("evaluation", "runner", "executionProvider"), "cpu"]),
  );
  cel(
    "duplicate retrieval k",
    "spec.evaluation.retrieval.k",
    "unique",
    set([S("evaluation", "retrieval", "k"), [1, 5, 5]]),
  );
  cel(
    "zero-shot gate naming no zero-shot pack",
    "spec.evaluation.gates",
    "must name an entry of evaluation.zeroShot",
    set([S("evaluation", "gates", 1, "metric"), "zeroShot.coco.top1"]),
  );
  cel(
    "Recall@10 gate with k [1, 5]",
    "spec.evaluation.gates",
    "needs its K in evaluation.retrieval.k",
    set([S("evaluation", "gates", 0, "metric"), "retrieval.id.imageToTextRecallAt10"]),
  );
  cel(
    "duplicate zero-shot names",
    "spec.evaluation.zeroShot",
    "must be unique",
    set([S("evaluation", "zeroShot", 1), { name: "imagenet-val", uri: "s3://eval/other/" }]),
  );
  cel(
    "budget smaller than the world size (2 x 4 GPUs)",
    "spec.strategy.samplesPerRound",
    "at least the world size",
    set([S("strategy", "samplesPerRound"), 7], [S("strategy", "bufferSamples"), 0]),
  );
  cel(
    "global batch not divisible over 2 x 4 GPUs",
    "spec.strategy.optimizer.batchSize",
    "divide evenly",
    set([S("strategy", "optimizer", "batchSize"), 4100]),
  );
  cel(
    "artifacts inside the source prefix",
    "spec.artifacts.s3.prefix",
    "inside the source prefix",
    set([S("artifacts", "s3"), { bucket: "tic-data", prefix: "laion/slices/runs/" }]),
  );
  cel(
    "artifacts at the source prefix itself",
    "spec.artifacts.s3.prefix",
    "inside the source prefix",
    set([S("artifacts", "s3"), { bucket: "tic-data", prefix: "laion/slices/" }]),
  );
  cel(
    "promotion inside the source prefix",
    "spec.promotion.s3.prefix",
    "inside the source prefix",
    set([S("promotion", "s3"), { bucket: "tic-data", prefix: "laion/slices/models/" }]),
  );
  cel(
    "promotion at the artifacts prefix",
    "spec.promotion.s3.prefix",
    "overlap",
    set([S("promotion", "s3"), { bucket: "tic-runs", prefix: "complete-b32/" }]),
  );
  cel(
    "artifacts at the bucket root holding the promotion prefix",
    "spec.promotion.s3.prefix",
    "overlap",
    set([S("promotion", "s3"), { bucket: "tic-runs", prefix: "models/" }], [S("artifacts", "s3", "prefix"), ""]),
  );
  for (const loc of ["source", "artifacts", "promotion"]) {
    cel(
      `VirtualHost addressing with a dotted ${loc} bucket`,
      "spec.source.s3.addressingStyle",
      "without dots",
      set([S("source", "s3", "addressingStyle"), "VirtualHost"], [S(loc, "s3", "bucket"), "tic.dotted"]),
    );
  }
  const git = (...keys: Key[]) => S("promotion", "git", ...keys);
  for (const branch of ["branch", "pushBranch"]) {
    cel(
      `git ${branch} with '..'`,
      `spec.promotion.git.${branch}`,
      "valid branch name",
      set([git(branch), "release..1"]),
    );
  }
  cel("git path with a '..' segment", "spec.promotion.git.path", "'..' segments", set([git("path"), "a/../b.yaml"]));
  cel(
    "git marker file inside .git",
    "spec.promotion.git.markerFiles[0]",
    "'..' segments or point into .git",
    set([git("markerFiles", 0), ".git/config.yaml"]),
  );
  cel(
    "git URL with credentials",
    "spec.promotion.git.url",
    "must not carry credentials",
    set([git("url"), "https://user:token@git.example.com/serving.git"]),
  );
  cel("git with neither path nor marker files", "spec.promotion.git", "set path", set([git("markerFiles"), []]), [
    git("path"),
  ]);
  cel(
    "git path also a marker file",
    "spec.promotion.git.markerFiles",
    "cannot also be a marker file",
    set([git("markerFiles", 0), "serving/clip/model.yaml"]),
  );
  cel(
    "git marker file listed twice",
    "spec.promotion.git.markerFiles",
    "must be unique",
    set([git("markerFiles"), ["a.yaml", "a.yaml"]]),
  );
  return cases;
}

/**
 * Cases for the rules of the core/v1 Affinity schema (api/affinity.ts), which recur at every place
 * the schema is used: one case per rule per place, made from what the rule says.
 */
function affinityCases(rules: Array<{ at: string; keys: Key[]; rule: CelRule }>): InvalidCase[] {
  const cases: InvalidCase[] = [];
  const cel = (at: string, field: string, says: string, s: Array<{ path: Key[]; value: unknown }>, del?: Key[][]) =>
    cases.push({ name: `${at}: ${says}`, kind: "cel", field, says, set: s, ...(del ? { delete: del } : {}) });
  for (const { at, keys: k, rule } of rules.filter((r) => r.at.startsWith("spec.trainer.affinity"))) {
    const m = rule.message;
    const field = (child: string) => `${at}.${child}`;
    if (m.startsWith("values must be specified"))
      cel(at, field("values"), m, set([[...k, "operator"], "In"], [[...k, "values"], []]));
    else if (m.startsWith("values may not be specified"))
      cel(at, field("values"), m, set([[...k, "operator"], "Exists"], [[...k, "values"], ["x"]]));
    else if (m.startsWith("operator Gt or Lt"))
      cel(
        at,
        field("values"),
        m,
        set(
          [[...k, "operator"], "Lt"],
          [
            [...k, "values"],
            ["1", "2"],
          ],
        ),
      );
    else if (m.startsWith("a node field selector")) cel(at, field("values"), m, set([[...k, "values"], []]));
    else if (m.startsWith("must be a qualified name")) cel(at, at, m, set([k, "bad key!"]));
    else if (m.startsWith("label keys must be qualified")) cel(at, at, m, set([k, { "bad key!": "x" }]));
    else if (/^(mis)?matchLabelKeys must not be specified/.test(m)) {
      const keys = m.split(" ")[0]!;
      cel(at, field(keys), m, [], [[...k, "labelSelector"]]);
    } else if (m.startsWith("a key exists in both"))
      cel(
        at,
        field("matchLabelKeys"),
        m,
        set([
          [...k, "mismatchLabelKeys"],
          ["ticclip.dev/run", "ticclip.dev/round"],
        ]),
      );
    else throw new Error(`no case for the affinity rule at ${at}: ${m}`);
  }
  return cases;
}

/**
 * Values the two engines used to read differently (JavaScript's \s includes \v, its `.` stops at
 * \r; RE2's do neither): each must be refused by both (test/unit/api/patterns.test.ts has why).
 */
function engineCases(): InvalidCase[] {
  const pattern = (name: string, field: string, keys: Key[], value: string): InvalidCase => ({
    name,
    kind: "pattern",
    field,
    set: [{ path: keys, value }],
  });
  return [
    pattern(
      "a source prefix with a vertical tab",
      "spec.source.s3.prefix",
      S("source", "s3", "prefix"),
      "laion\vslices/",
    ),
    pattern(
      "an endpoint with a vertical tab",
      "spec.source.s3.endpoint",
      S("source", "s3", "endpoint"),
      "https://s3\v.eu",
    ),
    pattern(
      "an initial checkpoint with a carriage return",
      "spec.model.initialCheckpoint",
      S("model", "initialCheckpoint"),
      "s3://models/openclip/vit\r-b-32.pt",
    ),
  ];
}

/** Which CEL rule a hand case exercises: the rule at `at` whose message contains `says`. */
function coveredBy(c: InvalidCase, rules: Array<{ at: string; rule: CelRule }>): Array<{ at: string; rule: CelRule }> {
  const anyIndex = (p: string) => p.replace(/\[[0-9]+\]/g, "[]");
  return rules.filter(
    (r) => r.rule.message.includes(c.says ?? "\u0000") && anyIndex(c.field).startsWith(anyIndex(r.at)),
  );
}

export function buildInvalidTable(): { base: string; cases: InvalidCase[] } {
  const crd = buildCrd() as Json;
  const root = crd.spec.versions[0].schema.openAPIV3Schema as Json;
  const base = YAML.parse(readFileSync(path.join(REPO_ROOT, BASE_MANIFEST), "utf8")) as Json;
  const cases: InvalidCase[] = [];
  walkObject(root.properties.spec, ["spec"], "spec", base.spec, cases);
  cases.unshift({ name: "spec: required, removed", kind: "required", field: "spec", delete: [["spec"]] });
  const rules = celRules(root);
  const hand = [...celCases(), ...affinityCases(rules)];
  const uncovered = rules.filter((r) => !hand.some((c) => coveredBy(c, [r]).length > 0));
  if (uncovered.length)
    throw new Error(`CEL rules without a case: ${uncovered.map((r) => `${r.at}: ${r.rule.message}`).join("; ")}`);
  for (const c of hand) if (coveredBy(c, rules).length === 0) throw new Error(`case "${c.name}" exercises no CEL rule`);
  // Sanity: every mutation path exists in the base (a typo would make a case test nothing).
  for (const c of [...cases, ...hand])
    for (const s of c.set ?? [])
      if (at(base, s.path.slice(0, -1)) === undefined) throw new Error(`${c.name}: no ${fieldPath(s.path)} in base`);
  return { base: BASE_MANIFEST, cases: [...cases, ...hand, ...engineCases()] };
}

const NOTE = "Generated by test/support/invalid-table.ts from the zod schema (npm run gen). Do not edit.";

export function renderInvalidTable(): string {
  return JSON.stringify({ $comment: NOTE, ...buildInvalidTable() }, null, 1) + "\n";
}

if (process.argv[1] === fileURLToPath(import.meta.url)) writeIfChanged(TABLE_PATH, renderInvalidTable());
