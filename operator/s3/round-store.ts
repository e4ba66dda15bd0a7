// A run's round folders under spec.artifacts (layout in api/round-layout.ts), read and written
// through the one S3 object adapter, so they share its timeouts and error classification. Every
// document is read with its size limit and parsed with its schema (s3/documents.ts).
import type { z } from "zod";
import { evalRequest } from "../api/eval-request.ts";
import { evalResult } from "../api/eval-result.ts";
import { computeRecord, failureRecord, trainerProgress, trainSummary, verdictRecord } from "../api/round-documents.ts";
import { parseRoundKey, ROUND_FILES, roundsUri, roundUri, type ArtifactsLocation } from "../api/round-layout.ts";
import { roundPlan } from "../api/round-plan.ts";
import { DOCUMENT_LIMITS, documentBody, expectedRead, readDocument, type DocumentRead } from "./documents.ts";
import type { ConditionalObjectStore } from "./object-store.ts";

/** The files of each round folder with their ETags (undefined where the store has none), by round. */
export type RoundListing = Map<number, Map<string, string | undefined>>;

/** The documents of a round folder: the schema each is parsed with and the most bytes it may have. */
export const ROUND_DOCUMENTS = {
  [ROUND_FILES.plan]: { schema: roundPlan, maxBytes: DOCUMENT_LIMITS.plan },
  [ROUND_FILES.failure]: { schema: failureRecord, maxBytes: DOCUMENT_LIMITS.failure },
  [ROUND_FILES.eval]: { schema: evalResult, maxBytes: DOCUMENT_LIMITS.eval },
  [ROUND_FILES.verdict]: { schema: verdictRecord, maxBytes: DOCUMENT_LIMITS.verdict },
  [ROUND_FILES.compute]: { schema: computeRecord, maxBytes: DOCUMENT_LIMITS.compute },
  [ROUND_FILES.summary]: { schema: trainSummary, maxBytes: DOCUMENT_LIMITS.summary },
  [ROUND_FILES.evalRequest]: { schema: evalRequest, maxBytes: DOCUMENT_LIMITS.evalRequest },
  [ROUND_FILES.progress]: { schema: trainerProgress, maxBytes: DOCUMENT_LIMITS.progress },
} as const;
export type RoundDocument = keyof typeof ROUND_DOCUMENTS;
export type RoundDocumentValue<F extends RoundDocument> = z.infer<(typeof ROUND_DOCUMENTS)[F]["schema"]>;

/**
 * Bytes of documents one RoundStore (one run's observation) may be reading at once. Round folders
 * are read several at a time (observe.ts), and a run's author decides how large its documents are:
 * each read reserves its listed size (or, unlisted, the limit of its kind, which for plan.json and
 * eval.json is this whole budget), so a run never holds more than this.
 */
export const READ_BUDGET_BYTES = DOCUMENT_LIMITS.plan;

export class RoundStore {
  readonly #objects: ConditionalObjectStore;
  readonly artifacts: ArtifactsLocation;
  #reading = 0;
  readonly #waiting: (() => void)[] = [];
  /** Object sizes from this store's own listing: a read reserves what it will read, not its limit. */
  readonly #sizes = new Map<string, number>();
  constructor(objects: ConditionalObjectStore, artifacts: ArtifactsLocation) {
    this.#objects = objects;
    this.artifacts = artifacts;
  }

  uri(round: number, file: string): string {
    return `${roundUri(this.artifacts, round)}${file}`;
  }

  /** One pass over rounds/: which files each round has (partial/ checkpoints excluded). */
  async listRounds(): Promise<RoundListing> {
    const out: RoundListing = new Map();
    const base = roundsUri(this.artifacts);
    for (const o of await this.#objects.list(base)) {
      const key = parseRoundKey(o.uri.slice(base.length));
      if (!key) continue;
      if (!out.has(key.round)) out.set(key.round, new Map());
      out.get(key.round)!.set(key.file, o.etag);
      this.#sizes.set(o.uri, o.size);
    }
    return out;
  }

  /**
   * A round document parsed with its schema: undefined when absent, `{ invalid }` (naming the key)
   * when too large, not JSON or not of its shape. S3 failures (timeouts included) are thrown.
   */
  async readDocument<F extends RoundDocument>(round: number, file: F): Promise<DocumentRead<RoundDocumentValue<F>>> {
    const { schema, maxBytes } = ROUND_DOCUMENTS[file];
    const uri = this.uri(round, file);
    // A document this store listed reserves (and reads) about its listed size, so small documents
    // are read side by side and large ones one at a time; one that grew since is read again with
    // the limit of its kind reserved. Unlisted, the limit of its kind.
    const listed = this.#sizes.get(uri);
    let reserved = listed === undefined ? maxBytes : expectedRead(listed, maxBytes);
    await this.#acquire(reserved);
    try {
      const expect =
        listed === undefined
          ? undefined
          : {
              bytes: listed,
              reserve: async (bytes: number) => {
                this.#release(reserved);
                reserved = 0;
                await this.#acquire(bytes);
                reserved = bytes;
              },
            };
      const doc = await readDocument<unknown>(this.#objects, uri, maxBytes, schema as z.ZodType, expect);
      return doc as DocumentRead<RoundDocumentValue<F>>;
    } finally {
      this.#release(reserved);
    }
  }

  /**
   * Writes a JSON document only if the key is absent (If-None-Match: *), so two writers, or a
   * writer restarted mid-way, can never replace a plan another already acted on. A document over
   * the limit of its kind is refused (ObjectTooLarge): no reader would accept it.
   * Returns false when the object already existed.
   */
  async putJsonIfAbsent(round: number, file: RoundDocument, doc: unknown): Promise<boolean> {
    const uri = this.uri(round, file);
    const body = documentBody(uri, doc, ROUND_DOCUMENTS[file].maxBytes);
    return this.#objects.putIfAbsent(uri, body, "application/json");
  }

  /** Writes (or replaces) a JSON document, refused over the limit of its kind as putJsonIfAbsent. */
  async putJson(round: number, file: RoundDocument, doc: unknown): Promise<void> {
    const uri = this.uri(round, file);
    return this.#objects.put(uri, documentBody(uri, doc, ROUND_DOCUMENTS[file].maxBytes), "application/json");
  }

  async #acquire(bytes: number): Promise<void> {
    while (this.#reading > 0 && this.#reading + bytes > READ_BUDGET_BYTES)
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.#reading += bytes;
  }

  #release(bytes: number): void {
    this.#reading -= bytes;
    for (const wake of this.#waiting.splice(0)) wake();
  }
}
