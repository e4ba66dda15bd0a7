import { describe, test } from "node:test";
import { createHash } from "node:crypto";
import assert from "node:assert/strict";
import { MemoryObjectStore } from "../../../operator/s3/object-store.ts";
import {
  aliasUri,
  listVersions,
  pinAlias,
  promoteRound,
  readAlias,
  unpinAlias,
  type PromotionTarget,
} from "../../../operator/promotion/versions.ts";

const target: PromotionTarget = { bucket: "models", prefix: "clip/b16/", alias: "production" };
const run = { namespace: "ml", name: "b16", uid: "uid-1" };
const roundUri = (r: number) => `s3://runs/b16/rounds/${String(r).padStart(4, "0")}/`;

function storeWithRounds(n: number): MemoryObjectStore {
  const s = new MemoryObjectStore();
  for (let r = 0; r < n; r++) {
    for (const f of [
      "image_encoder.onnx",
      "text_encoder.onnx",
      "model.json",
      "checkpoint.pt",
      "eval.json",
      "_SUCCESS",
    ]) {
      void s.put(roundUri(r) + f, `round ${r} ${f}`);
    }
  }
  return s;
}

const promote = (s: MemoryObjectStore, r: number, now = `2026-01-0${r + 1}T00:00:00Z`) =>
  promoteRound(s, {
    target,
    run,
    round: r,
    roundUri: roundUri(r),
    metrics: { "retrieval.id.meanRecallAt1": 0.1 * (r + 1) },
    now,
  });

const text = (s: MemoryObjectStore, uri: string) => new TextDecoder().decode(s.objects.get(uri));

describe("promoteRound", () => {
  test("copies the round into v1, writes version.json and then the alias", async () => {
    const s = storeWithRounds(1);
    const writes: string[] = [];
    s.failOn = (_op, uri) => {
      writes.push(uri);
      return false;
    };
    const out = await promote(s, 0);
    assert.ok(out.ok);
    assert.equal(out.pointer.version, 1);
    assert.equal(out.pointer.uri, "s3://models/clip/b16/v1/");
    assert.equal(out.pointer.uris.imageEncoder, "s3://models/clip/b16/v1/image_encoder.onnx");
    assert.equal(text(s, "s3://models/clip/b16/v1/checkpoint.pt"), "round 0 checkpoint.pt");
    assert.equal(s.objects.has("s3://models/clip/b16/v1/_SUCCESS"), false);
    assert.deepEqual(writes.slice(-2), ["s3://models/clip/b16/v1/version.json", aliasUri(target)]);
  });

  test("is idempotent: promoting the same round again copies and writes nothing", async () => {
    const s = storeWithRounds(1);
    await promote(s, 0);
    const before = new Map(s.objects);
    const again = await promote(s, 0, "2027-01-01T00:00:00Z");
    assert.ok(again.ok);
    assert.equal(again.copied, false);
    assert.equal(again.aliasWritten, false);
    assert.equal(again.pointer.promotedAt, "2026-01-01T00:00:00Z");
    assert.deepEqual(s.objects, before);
  });

  test("later rounds get the next version numbers", async () => {
    const s = storeWithRounds(3);
    for (const r of [0, 1, 2]) await promote(s, r);
    const { complete, incomplete } = await listVersions(s, target);
    assert.deepEqual(
      complete.map((v) => [v.version, v.round]),
      [
        [1, 0],
        [2, 1],
        [3, 2],
      ],
    );
    assert.deepEqual(incomplete, []);
    const alias = await readAlias(s, target);
    assert.ok(alias && !("invalid" in alias));
    assert.equal(alias.version, 3);
  });

  test("a crash at any write leaves one consistent promoted version after the retry", async () => {
    // Count the writes of a clean promotion of round 1 (after round 0 was promoted).
    const probe = storeWithRounds(2);
    await promote(probe, 0);
    let total = 0;
    probe.failOn = () => {
      total++;
      return false;
    };
    await promote(probe, 1);
    assert.ok(total >= 5);
    for (let k = 0; k < total; k++) {
      const s = storeWithRounds(2);
      await promote(s, 0);
      let n = 0;
      s.failOn = () => n++ === k;
      await assert.rejects(promote(s, 1), /injected failure/);
      // Until the alias write succeeds, readers still see v1, complete.
      const mid = await readAlias(s, target);
      assert.ok(mid && !("invalid" in mid));
      assert.equal(mid.version, 1);
      s.failOn = undefined;
      const out = await promote(s, 1);
      assert.ok(out.ok, `crash at write ${k}`);
      const { complete, incomplete } = await listVersions(s, target);
      assert.deepEqual(
        complete.map((v) => v.version),
        [1, 2],
        `crash at write ${k}`,
      );
      assert.deepEqual(incomplete, []);
      assert.equal(out.pointer.version, 2);
      assert.equal(text(s, "s3://models/clip/b16/v2/model.json"), "round 1 model.json");
    }
  });

  test("refuses a round without its encoders or checkpoint", async () => {
    const s = new MemoryObjectStore();
    await s.put(roundUri(0) + "model.json", "{}");
    const out = await promote(s, 0);
    assert.equal(out.ok, false);
    assert.ok(
      !out.ok &&
        out.reason === "RoundArtifactsMissing" &&
        /image_encoder\.onnx, text_encoder\.onnx, checkpoint\.pt/.test(out.message),
    );
    assert.equal((await listVersions(s, target)).complete.length, 0);
  });

  test("with moveAlias false (pinned) makes the version but leaves the alias", async () => {
    const s = storeWithRounds(2);
    await promote(s, 0);
    const out = await promoteRound(s, {
      target,
      run,
      round: 1,
      roundUri: roundUri(1),
      metrics: {},
      now: "t",
      moveAlias: false,
    });
    assert.ok(out.ok);
    assert.equal(out.version.version, 2);
    assert.equal(out.pointer.version, 1);
  });
});

describe("pinAlias / unpinAlias", () => {
  test("rolls the alias back to an earlier version and forward again", async () => {
    const s = storeWithRounds(3);
    for (const r of [0, 1, 2]) await promote(s, r);
    const pinned = await pinAlias(s, target, 1, "2026-02-01T00:00:00Z");
    assert.ok(pinned.ok);
    assert.equal(pinned.pointer.version, 1);
    assert.equal(pinned.pointer.pinned, true);
    assert.equal(pinned.pointer.uris.checkpoint, "s3://models/clip/b16/v1/checkpoint.pt");
    const again = await pinAlias(s, target, 1, "2026-03-01T00:00:00Z");
    assert.ok(again.ok && !again.aliasWritten && again.pointer.promotedAt === "2026-02-01T00:00:00Z");
    const back = await unpinAlias(s, target, "2026-04-01T00:00:00Z");
    assert.ok(back?.ok);
    assert.equal(back.pointer.version, 3);
    assert.equal(back.pointer.pinned, false);
  });

  test("pinning a version that does not exist is refused with the versions there are", async () => {
    const s = storeWithRounds(1);
    await promote(s, 0);
    const out = await pinAlias(s, target, 7, "t");
    assert.ok(!out.ok && out.reason === "VersionNotFound" && /versions: 1/.test(out.message));
    const alias = await readAlias(s, target);
    assert.ok(alias && !("invalid" in alias) && alias.version === 1);
  });

  test("an incomplete version folder cannot be pinned", async () => {
    const s = storeWithRounds(1);
    await s.put("s3://models/clip/b16/v1/model.json", "partial");
    const out = await pinAlias(s, target, 1, "t");
    assert.ok(!out.ok && out.reason === "VersionNotFound");
  });
});

describe("listVersions with a cache", () => {
  test("reads each complete version.json once, and again only when it changed", async () => {
    const s = storeWithRounds(3);
    for (const r of [0, 1, 2]) await promote(s, r);
    const gets: string[] = [];
    const get = s.get.bind(s);
    s.get = async (uri: string) => {
      gets.push(uri);
      return get(uri);
    };
    const cache = new Map();
    assert.equal((await listVersions(s, target, cache)).complete.length, 3);
    assert.equal(gets.length, 3);
    assert.deepEqual(
      (await listVersions(s, target, cache)).complete.map((v) => v.version),
      [1, 2, 3],
    );
    assert.equal(gets.length, 3, "no version.json read again");
    await s.put("s3://models/clip/b16/v2/version.json", "{}");
    assert.deepEqual(
      (await listVersions(s, target, cache)).complete.map((v) => v.version),
      [1, 3],
      "a changed (now invalid) one is read again",
    );
  });
});

// Issue 21, High 3: a version holds exactly the bytes that were evaluated.
describe("promoteRound with the evaluated digests", () => {
  const sha = (s: string) => createHash("sha256").update(s).digest("hex");
  /** Round 0 promoted with what the request says of it (the evaluated digests, the leadership signal). */
  const promoteRound0 = (s: MemoryObjectStore, o: Partial<Parameters<typeof promoteRound>[1]>) =>
    promoteRound(s, { target, run, round: 0, roundUri: roundUri(0), metrics: {}, now: "t", ...o });
  test("makes the version when the copies have the evaluated sha256", async () => {
    const s = storeWithRounds(1);
    const out = await promoteRound0(s, { expectSha256: { "image_encoder.onnx": sha("round 0 image_encoder.onnx") } });
    assert.ok(out.ok && out.version.version === 1);
  });
  test("writes no version.json and no alias when a copy is not what was evaluated", async () => {
    const s = storeWithRounds(1);
    const out = await promoteRound0(s, {
      expectSha256: { "image_encoder.onnx": sha("the encoder that was evaluated") },
    });
    assert.ok(!out.ok && out.reason === "EvaluatedBytesChanged" && /image_encoder\.onnx has sha256/.test(out.message));
    assert.equal(s.objects.has("s3://models/clip/b16/v1/version.json"), false);
    assert.equal(s.objects.has(aliasUri(target)), false);
    assert.deepEqual((await listVersions(s, target)).complete, []);
  });
  test("a deposed leader writes nothing more: each write checks the signal", async () => {
    const s = storeWithRounds(1);
    const leadership = new AbortController();
    const copy = s.copy.bind(s);
    s.copy = async (from, to) => {
      await copy(from, to);
      leadership.abort(new Error("leadership lost"));
    };
    await assert.rejects(promoteRound0(s, { signal: leadership.signal }), /leadership lost/);
    assert.equal(s.objects.has("s3://models/clip/b16/v1/version.json"), false);
    assert.equal(s.objects.has(aliasUri(target)), false);
  });
});

// Issue 21, check: two runs sharing a promotion prefix can never fill the same vN.
describe("promoteRound by two runs on one prefix at once", () => {
  test("the second is refused before it copies anything; the first's v1 holds only its bytes", async () => {
    const s = storeWithRounds(1);
    const theirRound = "s3://runs/other/rounds/0000/";
    for (const f of ["image_encoder.onnx", "text_encoder.onnx", "model.json", "checkpoint.pt"])
      await s.put(theirRound + f, `their ${f}`);
    let release!: () => void;
    const paused = new Promise<void>((r) => (release = r));
    let started!: () => void;
    const copying = new Promise<void>((r) => (started = r));
    const copy = s.copy.bind(s);
    s.copy = async (from, to) => {
      if (from.startsWith(roundUri(0))) {
        started();
        await paused;
      }
      return copy(from, to);
    };
    const first = promote(s, 0);
    await copying;
    const other = { namespace: "team-b", name: "other", uid: "uid-b" };
    const second = await promoteRound(s, { target, run: other, round: 0, roundUri: theirRound, metrics: {}, now: "t" });
    assert.ok(!second.ok && second.reason === "PromotionPrefixShared", JSON.stringify(second));
    assert.match(second.message, /being filled by run ml\/b16/);
    release();
    const out = await first;
    assert.ok(out.ok && out.version.version === 1);
    assert.equal(text(s, "s3://models/clip/b16/v1/checkpoint.pt"), "round 0 checkpoint.pt");
    assert.equal(text(s, "s3://models/clip/b16/v1/model.json"), "round 0 model.json");
  });
});
