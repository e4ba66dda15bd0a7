// Validation of one complete slice folder (its listing plus manifest.json): a pure function that
// returns the slice or the precise reason it is invalid.
import { createHash } from "node:crypto";
import { formatIssues } from "../api/common.ts";
import { MANIFEST_NAME, sliceIdProblem, sliceManifest, type SliceManifest } from "../api/slice-manifest.ts";
import type { ObjectInfo } from "../s3/slice-store.ts";

export const INVALID_REASONS = [
  "InvalidSliceId",
  "ManifestMissing",
  "ManifestNotJson",
  "ManifestInvalid",
  "SliceIdMismatch",
  "DuplicateSliceId",
  "ShardMissing",
  "ShardSizeMismatch",
  "SampleCountMismatch",
  "EvalPackMissing",
  "OutOfOrder",
  "Unreadable",
] as const;
export type InvalidReason = (typeof INVALID_REASONS)[number];

export type InvalidSlice = { id: string; reason: InvalidReason; message: string };

export type SliceShard = { key: string; uri: string; samples: number; bytes: number };

/** A valid slice: what the planner and the evaluator need, and a fingerprint of its content. */
export type Slice = {
  id: string;
  /** s3://bucket/<prefix><id>/ */
  uri: string;
  createdAt: string;
  numSamples: number;
  shards: SliceShard[];
  /** s3:// URI of the held-out retrieval pack folder, when the manifest names one. */
  evalRetrievalUri?: string | undefined;
  /** sha256 of the manifest content (sliceId excluded), to tell changed or duplicate content apart. */
  fingerprint: string;
  /** How the trainer reads the samples, when the manifest says (a slice made in place from existing shards). */
  jsonCaptionField?: string | undefined;
  heldOutFraction?: number | undefined;
};

export type Validation = { ok: true; slice: Slice; manifest: SliceManifest } | { ok: false; invalid: InvalidSlice };

export type FolderContents = {
  bucket: string;
  /** Folder key: <prefix><id>/ */
  folder: string;
  id: string;
  objects: ObjectInfo[];
  /** manifest.json text; undefined when the object is absent. */
  manifestText: string | undefined;
};

const LIST_LIMIT = 3;

function listSome(items: string[]): string {
  const shown = items.slice(0, LIST_LIMIT).join(", ");
  return items.length > LIST_LIMIT ? `${shown} and ${items.length - LIST_LIMIT} more` : shown;
}

export function fingerprintManifest(m: SliceManifest): string {
  const content = {
    numSamples: m.numSamples,
    shards: m.shards.map((s) => [s.key, s.samples, s.bytes]),
    eval: m.eval ?? null,
    // Only when present: the fingerprints of manifests without them stay what they were.
    ...(m.jsonCaptionField !== undefined ? { jsonCaptionField: m.jsonCaptionField } : {}),
    ...(m.heldOutFraction !== undefined ? { heldOutFraction: m.heldOutFraction } : {}),
  };
  return createHash("sha256").update(JSON.stringify(content)).digest("hex");
}

/**
 * A slice folder checked in order: its id, its manifest (parseManifest), then the shards and eval
 * pack the manifest names against the folder's listing (contentProblem). known: looks up an already
 * valid slice by id, to tell a duplicate id from a plain mismatch.
 */
export function validateSlice(
  f: FolderContents,
  known?: (id: string) => Pick<Slice, "fingerprint"> | undefined,
): Validation {
  const parsed = parseManifest(f, known);
  if (!parsed.ok) return parsed;
  const m = parsed.manifest;
  const problem = contentProblem(f, m);
  if (problem) return invalid(f, problem[0], problem[1]);
  const base = `s3://${f.bucket}/${f.folder}`;
  const evalPrefix = m.eval?.retrieval;
  return {
    ok: true,
    manifest: m,
    slice: {
      id: f.id,
      uri: base,
      createdAt: m.createdAt,
      numSamples: m.numSamples,
      shards: m.shards.map((s) => ({ key: s.key, uri: base + s.key, samples: s.samples, bytes: s.bytes })),
      evalRetrievalUri: evalPrefix ? base + evalPrefix : undefined,
      fingerprint: fingerprintManifest(m),
      ...(m.jsonCaptionField !== undefined ? { jsonCaptionField: m.jsonCaptionField } : {}),
      ...(m.heldOutFraction !== undefined ? { heldOutFraction: m.heldOutFraction } : {}),
    },
  };
}

const invalid = (f: FolderContents, reason: InvalidReason, message: string): Validation & { ok: false } => ({
  ok: false,
  invalid: { id: f.id, reason, message },
});

/** The folder's id and manifest.json: present, JSON, of the slice schema, and naming this folder's id. */
function parseManifest(
  f: FolderContents,
  known?: (id: string) => Pick<Slice, "fingerprint"> | undefined,
): { ok: true; manifest: SliceManifest } | (Validation & { ok: false }) {
  const idProblem = sliceIdProblem(f.id);
  if (idProblem) return invalid(f, "InvalidSliceId", idProblem);
  if (f.manifestText === undefined)
    return invalid(f, "ManifestMissing", `${f.folder}${MANIFEST_NAME} does not exist but _SUCCESS does`);
  let json: unknown;
  try {
    json = JSON.parse(f.manifestText);
  } catch (err) {
    return invalid(f, "ManifestNotJson", `${MANIFEST_NAME} is not JSON: ${(err as Error).message}`);
  }
  const parsed = sliceManifest.safeParse(json);
  if (!parsed.success)
    return invalid(
      f,
      "ManifestInvalid",
      `${MANIFEST_NAME} does not match the slice schema: ${formatIssues(parsed.error, { limit: 5 })}`,
    );
  const m = parsed.data;
  if (m.sliceId === f.id) return { ok: true, manifest: m };
  const other = known?.(m.sliceId);
  if (other) {
    const same = other.fingerprint === fingerprintManifest(m);
    return invalid(
      f,
      "DuplicateSliceId",
      `${MANIFEST_NAME} in folder ${f.id}/ declares sliceId ${m.sliceId}, which is already slice ${m.sliceId}/ ${same ? "(a copy with the same content)" : "with different content"}`,
    );
  }
  return invalid(f, "SliceIdMismatch", `${MANIFEST_NAME} declares sliceId ${m.sliceId} but lies in folder ${f.id}/`);
}

/** What the manifest says against what the folder holds: shards listed once, counted, present, of their size; the eval pack. */
function contentProblem(f: FolderContents, m: SliceManifest): [InvalidReason, string] | undefined {
  const dupKeys = m.shards.map((s) => s.key).filter((k, i, all) => all.indexOf(k) !== i);
  if (dupKeys.length)
    return ["ManifestInvalid", `${MANIFEST_NAME} lists shard ${listSome([...new Set(dupKeys)])} more than once`];
  const sum = m.shards.reduce((a, s) => a + s.samples, 0);
  if (sum !== m.numSamples)
    return ["SampleCountMismatch", `shards hold ${sum} samples in all but numSamples is ${m.numSamples}`];
  const sizes = new Map(f.objects.map((o) => [o.key, o.size]));
  const missing = m.shards.filter((s) => !sizes.has(f.folder + s.key)).map((s) => s.key);
  if (missing.length)
    return [
      "ShardMissing",
      `${missing.length} of ${m.shards.length} shards listed in ${MANIFEST_NAME} are absent: ${listSome(missing)}`,
    ];
  const wrongSize = m.shards
    .filter((s) => sizes.get(f.folder + s.key) !== s.bytes)
    .map((s) => `${s.key} (${sizes.get(f.folder + s.key)} bytes, manifest says ${s.bytes})`);
  if (wrongSize.length)
    return ["ShardSizeMismatch", `shard size differs from ${MANIFEST_NAME}: ${listSome(wrongSize)}`];
  const evalPrefix = m.eval?.retrieval;
  if (evalPrefix && !f.objects.some((o) => o.key.startsWith(f.folder + evalPrefix)))
    return [
      "EvalPackMissing",
      `${MANIFEST_NAME} names the retrieval pack ${evalPrefix} but nothing lies under ${f.folder}${evalPrefix}`,
    ];
  return undefined;
}
