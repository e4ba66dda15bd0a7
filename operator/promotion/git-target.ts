// What a promotion writes to Git (spec.promotion.git), pure: the file the operator owns, in-place
// updates of lines marked as Flux image automation marks them, and the commit message. The Git
// adapter (operator/git/) reads the files at the branch tip, calls planGitChange, and commits what
// it returns; a file this module cannot update is a reason, never an overwrite.
import YAML from "yaml";
import type { COMMIT_MESSAGE_VARIABLES, GitTargetSpec } from "../api/git-target.ts";
import type { AliasPointer } from "../api/promotion.ts";
import { buildModelConfigMap } from "./configmap.ts";

export type GitRun = { namespace: string; name: string; uid: string };

/** What the files say: the alias pointer as read from S3, and the run it belongs to. */
export type GitModel = { run: GitRun; pointer: AliasPointer; pointerUri: string };

export type GateLine = { metric: string; observed?: number | null; threshold?: number | null; passed: boolean };

export type FileProblem = {
  reason: "GitFileUnparseable" | "GitFileNotOwned" | "GitFileNotFound" | "GitMarkerNotFound" | "GitMarkerInvalid";
  /** The spec field at fault: path or markerFiles. */
  field: "path" | "markerFiles";
  message: string;
};

export type FileResult =
  | { kind: "unchanged" }
  | { kind: "write"; content: string }
  | ({ kind: "problem" } & FileProblem);

export const LOCAL_CONFIG_ANNOTATION = "config.kubernetes.io/local-config";
export const RUN_ANNOTATION = "ticclip.dev/run";

/**
 * The values the files carry, flat: the model ConfigMap's keys (one definition, configmap.ts),
 * less pointer.json. Marker fields are these names, metrics.json excepted.
 */
export function modelValues(m: GitModel): Record<string, string> {
  const { "pointer.json": _pointer, ...data } = buildModelConfigMap("git", m.run, m.pointer, m.pointerUri).data;
  return data;
}

export const MARKER_FIELDS = [
  "alias",
  "version",
  "round",
  "pinned",
  "uri",
  "pointerUri",
  "imageEncoderUri",
  "textEncoderUri",
  "modelJsonUri",
  "checkpointUri",
  "promotedAt",
] as const;

/** The object the owned file holds: a ConfigMap Kustomize reads but never applies (local-config). */
export type ModelDocument = {
  apiVersion: "v1";
  kind: "ConfigMap";
  metadata: { name: string; annotations: Record<string, string> };
  data: Record<string, string>;
};

export function modelDocument(m: GitModel): ModelDocument {
  return {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: {
      name: `${m.run.name}-model`,
      annotations: { [LOCAL_CONFIG_ANNOTATION]: "true", [RUN_ANNOTATION]: `${m.run.namespace}/${m.run.name}` },
    },
    data: modelValues(m),
  };
}

export function renderModelFile(m: GitModel): string {
  const header =
    `# Written by continual-clip-operator for ContinualClipRun ${m.run.namespace}/${m.run.name}: the model its alias\n` +
    `# "${m.pointer.alias}" serves. The operator rewrites this file whenever the alias moves (promotion,\n` +
    "# spec.promotion.pinVersion): change the run, not this file. Kustomize reads it as a replacements\n" +
    "# source and does not apply it (local-config); Helm reads it as a values file (.Values.data.uri).\n";
  // Every value double-quoted: YAML 1.1 readers (Helm, go-yaml) would read a bare time or "true"
  // as something other than the string the ConfigMap holds.
  const body = YAML.stringify(modelDocument(m), {
    lineWidth: 0,
    defaultStringType: "QUOTE_DOUBLE",
    defaultKeyType: "PLAIN",
  });
  return header + body;
}

/** The owned file (spec.promotion.git.path): created, left alone when it says the same, or rewritten. */
export function updateModelFile(path: string, current: string | undefined, m: GitModel): FileResult {
  const desired = modelDocument(m);
  if (current === undefined) return { kind: "write", content: renderModelFile(m) };
  const docs = YAML.parseAllDocuments(current);
  const broken = docs.flatMap((d) => d.errors).at(0);
  if (broken) {
    return {
      kind: "problem",
      reason: "GitFileUnparseable",
      field: "path",
      message: `${path} is not YAML (${broken.message.split("\n")[0]}); fix or delete it and the operator writes it again`,
    };
  }
  const values = docs.map((d) => d.toJS() as unknown).filter((v) => v !== null && v !== undefined);
  const doc = values.length === 1 ? values[0] : undefined;
  const owner = (doc as { metadata?: { annotations?: Record<string, unknown> } } | undefined)?.metadata?.annotations?.[
    RUN_ANNOTATION
  ];
  if (
    !doc ||
    typeof doc !== "object" ||
    (doc as { kind?: unknown }).kind !== "ConfigMap" ||
    owner !== desired.metadata.annotations[RUN_ANNOTATION]
  ) {
    return {
      kind: "problem",
      reason: "GitFileNotOwned",
      field: "path",
      message: `${path} exists and is not this run's model file (a ConfigMap annotated ${RUN_ANNOTATION}: ${m.run.namespace}/${m.run.name}); it is never overwritten: choose another path or delete the file`,
    };
  }
  if (sameJson(doc, desired)) return { kind: "unchanged" };
  return { kind: "write", content: renderModelFile(m) };
}

function sameJson(a: unknown, b: unknown): boolean {
  const canon = (v: unknown): unknown =>
    v && typeof v === "object" && !Array.isArray(v)
      ? Object.fromEntries(
          Object.keys(v)
            .sort()
            .map((k) => [k, canon((v as Record<string, unknown>)[k])]),
        )
      : Array.isArray(v)
        ? v.map(canon)
        : v;
  return JSON.stringify(canon(a)) === JSON.stringify(canon(b));
}

// A marker ends the line whose value it sets: `key: value # {"$ticclip": "ns:run:field"}` or
// `- value # {...}`. The value is a plain, single- or double-quoted scalar on that one line.
const MARKER = /\s#\s*\{\s*"\$ticclip"\s*:\s*"([^"]*)"\s*\}\s*$/;
const LINE =
  /^(\s*(?:-\s+)?(?:[^\s#'"{[:][^#:{}[\]]*:\s+)?)("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"{[|>&*!](?:[^#:]|:(?!\s))*?)(\s+#\s*\{\s*"\$ticclip".*)$/;

/** A marker's reference for this run and a field: "<namespace>:<run>:<field>". */
export const markerRef = (run: { namespace: string; name: string }, field: string) =>
  `${run.namespace}:${run.name}:${field}`;

function quoteLike(original: string, value: string): string {
  if (original.startsWith("'")) return `'${value.replaceAll("'", "''")}'`;
  if (original.startsWith('"')) return JSON.stringify(value);
  // A plain scalar stays plain while YAML reads it back as the same text (or number: versions).
  const plain = /^[A-Za-z0-9_./:@+-]+$/.test(value) && !/^(true|false|null|yes|no|on|off|~)$/i.test(value);
  return plain ? value : JSON.stringify(value);
}

/**
 * In-place updates of one marker file (spec.promotion.git.markerFiles): the value of every line
 * carrying this run's marker. Markers of other runs are left alone; a file with none of this
 * run's markers, or a marker on a line whose value cannot be replaced, is a problem.
 */
export function updateMarkers(path: string, current: string | undefined, m: GitModel): FileResult {
  const problem = (reason: FileProblem["reason"], message: string): FileResult => ({
    kind: "problem",
    reason,
    field: "markerFiles",
    message,
  });
  if (current === undefined) return problem("GitFileNotFound", `${path} does not exist on the branch`);
  const parsed = YAML.parseAllDocuments(current).flatMap((d) => d.errors);
  if (parsed.length) {
    return problem("GitFileUnparseable", `${path} is not YAML (${parsed[0]!.message.split("\n")[0]})`);
  }
  const values = modelValues(m);
  const prefix = `${m.run.namespace}:${m.run.name}:`;
  const lines = current.split("\n");
  let found = 0;
  for (const [i, line] of lines.entries()) {
    const marker = MARKER.exec(line);
    if (!marker || !marker[1]!.startsWith(prefix)) continue;
    const field = marker[1]!.slice(prefix.length);
    const where = `${path}:${i + 1}`;
    if (!(MARKER_FIELDS as readonly string[]).includes(field)) {
      return problem("GitMarkerInvalid", `${where}: marker field "${field}" is not one of ${MARKER_FIELDS.join(", ")}`);
    }
    const parts = LINE.exec(line);
    if (!parts) {
      return problem(
        "GitMarkerInvalid",
        `${where}: a marker must end a line "key: value" or "- value" whose value is a one-line scalar`,
      );
    }
    found++;
    lines[i] = parts[1]! + quoteLike(parts[2]!, values[field]!) + parts[3]!;
  }
  if (!found) {
    return problem(
      "GitMarkerNotFound",
      `${path} has no marker of this run: add # {"$ticclip": "${markerRef(m.run, "uri")}"} (or another field) to the line to update`,
    );
  }
  const next = lines.join("\n");
  if (next === current) return { kind: "unchanged" };
  const after = YAML.parseAllDocuments(next).flatMap((d) => d.errors);
  if (after.length) return problem("GitMarkerInvalid", `${path}: updating its markers would make it invalid YAML`);
  return { kind: "write", content: next };
}

export type GitChange =
  | { kind: "unchanged" }
  | { kind: "write"; files: { path: string; content: string }[] }
  | ({ kind: "problem" } & FileProblem);

/** The files of spec.promotion.git read at the branch tip. */
export const gitPaths = (spec: Pick<GitTargetSpec, "path" | "markerFiles">): string[] => [
  ...(spec.path ? [spec.path] : []),
  ...(spec.markerFiles ?? []),
];

/** Every file's update, or the first problem: one commit changes all of them or none. */
export function planGitChange(
  spec: Pick<GitTargetSpec, "path" | "markerFiles">,
  files: ReadonlyMap<string, string | undefined>,
  m: GitModel,
): GitChange {
  const writes: { path: string; content: string }[] = [];
  for (const path of gitPaths(spec)) {
    const current = files.get(path);
    const r = path === spec.path ? updateModelFile(path, current, m) : updateMarkers(path, current, m);
    if (r.kind === "problem") return r;
    if (r.kind === "write") writes.push({ path, content: r.content });
  }
  return writes.length ? { kind: "write", files: writes } : { kind: "unchanged" };
}

const formatNumber = (v: number | null | undefined) => (typeof v === "number" ? String(Number(v.toFixed(6))) : "n/a");

/** spec.promotion.git.commitMessage with its {{variables}} filled in. */
export function renderCommitMessage(template: string, m: GitModel, gates: readonly GateLine[] | undefined): string {
  const p = m.pointer;
  const metrics = Object.keys(p.metrics)
    .sort()
    .map((k) => `- ${k}: ${formatNumber(p.metrics[k])}`);
  const vars: Record<(typeof COMMIT_MESSAGE_VARIABLES)[number], string> = {
    run: `${m.run.namespace}/${m.run.name}`,
    namespace: m.run.namespace,
    name: m.run.name,
    alias: p.alias,
    version: String(p.version),
    round: String(p.round),
    uri: p.uri,
    action: p.pinned ? "roll back" : "promote",
    gates: gates?.length
      ? gates
          .map(
            (g) =>
              `- ${g.metric}: ${formatNumber(g.observed)}${g.threshold == null ? "" : ` (threshold ${formatNumber(g.threshold)})`} ${g.passed ? "passed" : "failed"}`,
          )
          .join("\n")
      : "- none recorded",
    metrics: metrics.length ? metrics.join("\n") : "- none recorded",
  };
  return template.replace(/\{\{ ?([a-z]+) ?\}\}/g, (all, name: string) =>
    name in vars ? vars[name as keyof typeof vars] : all,
  );
}
