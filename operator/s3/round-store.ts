// A run's round folders under spec.artifacts (layout in api/round-layout.ts), read and written
// through the one S3 object adapter, so they share its timeouts and error classification.
import { parseRoundKey, roundsUri, roundUri, type ArtifactsLocation } from "../api/round-layout.ts";
import type { ConditionalObjectStore } from "./object-store.ts";

/** The files of each round folder with their ETags (undefined where the store has none), by round. */
export type RoundListing = Map<number, Map<string, string | undefined>>;

export class RoundStore {
  readonly #objects: ConditionalObjectStore;
  readonly artifacts: ArtifactsLocation;
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
    }
    return out;
  }

  /** A round document parsed as JSON; undefined when it does not exist. */
  async getJson(round: number, file: string): Promise<unknown | undefined> {
    const raw = await this.#objects.get(this.uri(round, file));
    return raw === undefined ? undefined : JSON.parse(new TextDecoder().decode(raw));
  }

  /**
   * Writes a JSON document only if the key is absent (If-None-Match: *), so two writers, or a
   * writer restarted mid-way, can never replace a plan another already acted on.
   * Returns false when the object already existed.
   */
  putJsonIfAbsent(round: number, file: string, doc: unknown): Promise<boolean> {
    return this.#objects.putIfAbsent(this.uri(round, file), JSON.stringify(doc, null, 2), "application/json");
  }
}
