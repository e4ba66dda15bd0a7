import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseDuration } from "../../../operator/api/common.ts";
import { backoffDelay, SliceDiscovery, sliceStatus } from "../../../operator/data/discovery.ts";
import { classifyS3Error, S3Failure } from "../../../operator/s3/errors.ts";
import { MemoryStore, putSlice } from "./memory-store.ts";

const P = "slices/";

function discovery(store: MemoryStore, extra: { startAfter?: string } = {}) {
  return new SliceDiscovery({ store, prefix: P, pollIntervalMs: 60_000, random: () => 0.5, ...extra });
}

const ids = (xs: { id: string }[]) => xs.map((x) => x.id);

describe("SliceDiscovery", () => {
  test("finds complete slices in slice order with their shards", async () => {
    const s = new MemoryStore();
    for (const id of ["2016", "2014", "2015"]) putSlice(s, P, id);
    const r = await discovery(s).poll();
    assert.deepEqual(ids(r.slices), ["2014", "2015", "2016"]);
    assert.deepEqual(r.newSlices, ["2014", "2015", "2016"]);
    assert.deepEqual(r.slices[0]!.shards[1], {
      key: "shard-00001.tar",
      uri: "s3://data/slices/2014/shard-00001.tar",
      samples: 20,
      bytes: 9,
    });
    assert.equal(r.slices[0]!.numSamples, 30);
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.health, { ok: true });
  });

  test("keeps a slice without _SUCCESS invisible until the marker lands, at one HEAD per poll", async () => {
    const s = new MemoryStore();
    putSlice(s, P, "2014");
    putSlice(s, P, "2015", { complete: false });
    const d = discovery(s);
    let r = await d.poll();
    assert.deepEqual(ids(r.slices), ["2014"]);
    assert.deepEqual(r.pending, ["2015"]);
    s.resetCalls();
    r = await d.poll();
    assert.deepEqual(s.calls, { listFolders: 1, listObjects: 0, listRange: 0, getText: 0, exists: 1 });
    assert.deepEqual(r.newSlices, []);
    s.put(`${P}2015/_SUCCESS`, "");
    r = await d.poll();
    assert.deepEqual(r.newSlices, ["2015"]);
    assert.deepEqual(r.pending, []);
  });

  test("a steady-state poll over 2,500 slices is one list request, and pagination passes 1,000", async () => {
    const s = new MemoryStore(1000);
    const all = Array.from({ length: 2500 }, (_, i) => `s${String(i).padStart(5, "0")}`);
    for (const id of all) putSlice(s, P, id, { shards: [1] });
    const d = discovery(s);
    const cold = await d.poll();
    assert.equal(cold.slices.length, 2500);
    assert.deepEqual(ids(cold.slices), all);
    // Folders in 3 pages; their 7,500 keys in 8 pages of one range listing; one GET per manifest.
    assert.deepEqual(s.calls, { listFolders: 3, listObjects: 0, listRange: 8, getText: 2500, exists: 0 });
    s.resetCalls();
    const warm = await d.poll();
    assert.deepEqual(s.calls, { listFolders: 1, listObjects: 0, listRange: 0, getText: 0, exists: 0 });
    assert.equal(warm.slices.length, 2500);
    putSlice(s, P, "s99999", { shards: [1] });
    s.resetCalls();
    const next = await d.poll();
    assert.deepEqual(next.newSlices, ["s99999"]);
    assert.deepEqual(s.calls, { listFolders: 1, listObjects: 0, listRange: 1, getText: 1, exists: 0 });
  });

  test("ignores slices at or before startAfter, keys outside folders and other prefixes", async () => {
    const s = new MemoryStore();
    for (const id of ["2014", "2015", "2015-06", "2016"]) putSlice(s, P, id);
    putSlice(s, "other/", "2017");
    s.put(`${P}README.md`, "hi");
    const r = await discovery(s, { startAfter: "2015" }).poll();
    // 2015-06/ sorts before 2015/ in S3 key order ('-' < '/'), so it is at or before 2015.
    assert.deepEqual(ids(r.slices), ["2016"]);
  });

  const badCases: { name: string; setup: (s: MemoryStore) => void; reason: string; message: RegExp }[] = [
    {
      name: "a missing manifest",
      setup: (s) => {
        putSlice(s, P, "2015");
        s.delete(`${P}2015/manifest.json`);
      },
      reason: "ManifestMissing",
      message: /manifest\.json does not exist/,
    },
    {
      name: "a manifest that is not JSON",
      setup: (s) => putSlice(s, P, "2015", { manifest: "{not json" }),
      reason: "ManifestNotJson",
      message: /not JSON/,
    },
    {
      name: "a manifest violating the schema",
      setup: (s) =>
        putSlice(s, P, "2015", {
          manifest: {
            sliceId: "2015",
            createdAt: "yesterday",
            numSamples: 30,
            shards: [{ key: "shard-00000.tar", samples: -1, bytes: 8 }],
          },
        }),
      reason: "ManifestInvalid",
      message: /createdAt.*shards\.0\.samples/,
    },
    {
      name: "a shard listed but absent",
      setup: (s) => {
        putSlice(s, P, "2015");
        s.delete(`${P}2015/shard-00001.tar`);
      },
      reason: "ShardMissing",
      message: /1 of 2 shards .* absent: shard-00001\.tar/,
    },
    {
      name: "shard samples that disagree with numSamples",
      setup: (s) =>
        putSlice(s, P, "2015", {
          manifest: {
            sliceId: "2015",
            createdAt: "2024-01-01T00:00:00Z",
            numSamples: 31,
            shards: [
              { key: "shard-00000.tar", samples: 10, bytes: 8 },
              { key: "shard-00001.tar", samples: 20, bytes: 9 },
            ],
          },
        }),
      reason: "SampleCountMismatch",
      message: /hold 30 samples .* numSamples is 31/,
    },
    {
      name: "a shard of another size than the manifest says",
      setup: (s) => {
        putSlice(s, P, "2015");
        s.put(`${P}2015/shard-00000.tar`, "short");
      },
      reason: "ShardSizeMismatch",
      message: /shard-00000\.tar \(5 bytes, manifest says 8\)/,
    },
    {
      name: "a manifest naming another folder's id",
      setup: (s) =>
        putSlice(s, P, "2015", {
          manifest: {
            sliceId: "2099",
            createdAt: "2024-01-01T00:00:00Z",
            numSamples: 30,
            shards: [
              { key: "shard-00000.tar", samples: 10, bytes: 8 },
              { key: "shard-00001.tar", samples: 20, bytes: 9 },
            ],
          },
        }),
      reason: "SliceIdMismatch",
      message: /declares sliceId 2099/,
    },
    {
      name: "a duplicate slice id with different content",
      setup: (s) =>
        putSlice(s, P, "2015", {
          shards: [5],
          manifest: {
            sliceId: "2014",
            createdAt: "2024-01-01T00:00:00Z",
            numSamples: 5,
            shards: [{ key: "shard-00000.tar", samples: 5, bytes: 8 }],
          },
        }),
      reason: "DuplicateSliceId",
      message: /already slice 2014\/ with different content/,
    },
    {
      name: "a folder name that is not a valid slice id",
      setup: (s) => putSlice(s, P, "bad id"),
      reason: "InvalidSliceId",
      message: /not a valid S3 path segment/,
    },
    {
      name: "a missing eval pack",
      setup: (s) => {
        putSlice(s, P, "2015", { eval: true });
        s.delete(`${P}2015/eval/pack.tar`);
      },
      reason: "EvalPackMissing",
      message: /eval\//,
    },
  ];
  for (const c of badCases) {
    test(`marks ${c.name} invalid with a precise reason, and later slices still proceed`, async () => {
      const s = new MemoryStore();
      putSlice(s, P, "2014");
      c.setup(s);
      putSlice(s, P, "2016");
      const d = discovery(s);
      const r = await d.poll();
      assert.deepEqual(ids(r.slices), ["2014", "2016"]);
      assert.equal(r.invalid.length, 1);
      const inv = r.invalid[0]!;
      assert.equal(inv.reason, c.reason);
      assert.match(inv.message, c.message);
      assert.deepEqual(r.newInvalid, r.invalid);
      const again = await d.poll();
      assert.deepEqual(again.newInvalid, [], "reported once");
      assert.deepEqual(again.invalid, r.invalid);
      assert.deepEqual(sliceStatus(again, 1), {
        discovered: 2,
        consumed: 1,
        latest: "2016",
        invalid: [{ id: inv.id, reason: `${inv.reason}: ${inv.message}` }],
      });
    });
  }

  test("a manifest changed after a round consumed it raises a warning and keeps the consumed version", async () => {
    const s = new MemoryStore();
    putSlice(s, P, "2014");
    const d = discovery(s);
    const first = await d.poll();
    d.markConsumed(["2014"]);
    putSlice(s, P, "2014", { shards: [10, 20, 30] });
    assert.equal(d.notify(`${P}2014/manifest.json`), true);
    const r = await d.poll();
    assert.equal(r.warnings.length, 1);
    assert.equal(r.warnings[0]!.reason, "ManifestChanged");
    assert.match(r.warnings[0]!.message, /after a round consumed it/);
    assert.deepEqual(r.slices, first.slices);
    // recheck() of consumed slices finds it again, without a notification.
    d.recheck();
    assert.equal((await d.poll()).warnings.length, 1);
  });

  test("an unchanged recheck raises nothing", async () => {
    const s = new MemoryStore();
    putSlice(s, P, "2014");
    const d = discovery(s);
    await d.poll();
    d.markConsumed(["2014"]);
    d.recheck();
    const r = await d.poll();
    assert.deepEqual(r.warnings, []);
    assert.equal(s.calls.getText, 2);
  });

  test("a slice completing after a later slice was consumed is invalid OutOfOrder; one sorting after is fine", async () => {
    const s = new MemoryStore();
    putSlice(s, P, "2014");
    putSlice(s, P, "2016");
    const d = discovery(s);
    await d.poll();
    d.markConsumed(["2014", "2016"]);
    putSlice(s, P, "2015");
    putSlice(s, P, "2017");
    // The cursor is past 2015/, so only the notification makes discovery look there.
    assert.equal(d.notify(`${P}2015/_SUCCESS`), true);
    const r = await d.poll();
    assert.deepEqual(r.newSlices, ["2017"]);
    assert.deepEqual(
      r.newInvalid.map((i) => [i.id, i.reason]),
      [["2015", "OutOfOrder"]],
    );
  });

  test("notify only cares about _SUCCESS and manifest.json of this source", () => {
    const d = discovery(new MemoryStore(), { startAfter: "2010" });
    assert.equal(d.notify(`${P}2015/_SUCCESS`), true);
    assert.equal(d.notify(`${P}2015/manifest.json`), true);
    assert.equal(d.notify(`${P}2015/shard-00000.tar`), false);
    assert.equal(d.notify(`${P}2015/eval/_SUCCESS`), false);
    assert.equal(d.notify(`other/2015/_SUCCESS`), false);
    assert.equal(d.notify(`${P}_SUCCESS`), false);
    assert.equal(d.notify(`${P}2009/_SUCCESS`), false);
  });

  test("S3 errors back off with jitter, surface as degraded, and lose no slice", async () => {
    const s = new MemoryStore(2);
    for (const id of ["2014", "2015", "2016", "2017", "2018"]) putSlice(s, P, id);
    const rand = [0, 1, 0.5];
    let i = 0;
    const d = new SliceDiscovery({
      store: s,
      prefix: P,
      pollIntervalMs: 60_000,
      backoff: { baseMs: 1000, capMs: 60_000 },
      random: () => rand[i++ % rand.length]!,
    });
    // The second list page is throttled, and the manifest of 2015 fails with a 500.
    let calls = 0;
    const origList = s.listFolders.bind(s);
    s.listFolders = async (p, a) => {
      if (++calls === 2) s.fail("listFolders", { name: "SlowDown", status: 503 });
      return origList(p, a);
    };
    s.fail("getText", { name: "InternalError", status: 500 });
    let r = await d.poll();
    assert.equal(r.health.ok, false);
    assert.deepEqual(r.errors.map((e) => e.errorClass).sort(), ["ServerError", "Throttled"]);
    assert.ok(!r.health.ok && r.health.reason.startsWith("S3") && r.health.consecutiveFailures === 1);
    assert.ok(r.nextPollMs >= 500 && r.nextPollMs <= 1000, `first backoff ${r.nextPollMs}`);
    assert.ok(r.slices.length < 5);
    s.fail("*", { name: "InvalidAccessKeyId", status: 403 });
    r = await d.poll();
    assert.equal(r.errors[0]!.errorClass, "InvalidCredentials");
    assert.ok(!r.health.ok && r.health.consecutiveFailures === 2);
    assert.ok(r.nextPollMs >= 1000 && r.nextPollMs <= 2000, `second backoff ${r.nextPollMs}`);
    r = await d.poll();
    assert.deepEqual(ids(r.slices), ["2014", "2015", "2016", "2017", "2018"]);
    assert.deepEqual(r.health, { ok: true });
    assert.ok(r.nextPollMs >= 54_000 && r.nextPollMs <= 66_000);
  });

  test("when the range listing fails, new folders are listed one by one in the same poll", async () => {
    const s = new MemoryStore();
    for (const id of ["2014", "2015"]) putSlice(s, P, id);
    s.fail("listRange", { name: "InternalError", status: 500 });
    const r = await discovery(s).poll();
    assert.deepEqual(ids(r.slices), ["2014", "2015"]);
    assert.equal(r.errors.length, 1);
    assert.equal(s.calls.listObjects, 2);
  });

  test("a notification that arrives during a pass is kept for the next pass", async () => {
    const s = new MemoryStore();
    putSlice(s, P, "2014");
    const d = discovery(s);
    await d.poll();
    d.markConsumed(["2014"]);
    d.recheck(["2014"]);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const read = s.getText.bind(s);
    let reading!: () => void;
    const started = new Promise<void>((r) => (reading = r));
    s.getText = async (k) => {
      const v = await read(k); // the old manifest
      reading();
      await gate;
      return v;
    };
    const first = d.poll();
    await started;
    putSlice(s, P, "2014", { shards: [1, 2, 3] });
    assert.equal(d.notify(`${P}2014/manifest.json`), true);
    release();
    assert.deepEqual((await first).warnings, []);
    s.getText = read;
    const second = await d.poll();
    assert.deepEqual(
      second.warnings.map((w) => w.reason),
      ["ManifestChanged"],
    );
  });

  test("concurrent polls coalesce: one pass runs and one follows", async () => {
    const s = new MemoryStore();
    putSlice(s, P, "2014");
    const d = discovery(s);
    const [a, b, c] = await Promise.all([d.poll(), d.poll(), d.poll()]);
    assert.equal(s.calls.listFolders, 2);
    assert.deepEqual(ids(a.slices), ["2014"]);
    assert.equal(b, c);
  });
});

describe("backoffDelay", () => {
  test("grows monotonically with failures and stays within [d/2, cap]", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 1e7 }),
        (n, r, base, capExtra) => {
          const b = { baseMs: base, capMs: base + capExtra };
          const lo = (k: number) => backoffDelay(k, b, () => 0);
          const hi = (k: number) => backoffDelay(k, b, () => 1);
          assert.ok(lo(n) <= lo(n + 1) && hi(n) <= hi(n + 1));
          const d = backoffDelay(n, b, () => r);
          assert.ok(d >= lo(n) && d <= hi(n) && d <= b.capMs);
        },
      ),
    );
  });
});

describe("parseDuration", () => {
  for (const [s, ms] of [
    ["5m", 300_000],
    ["1h30m", 5_400_000],
    ["500ms", 500],
    ["30s", 30_000],
  ] as const) {
    test(`parses ${s}`, () => assert.equal(parseDuration(s), ms));
  }
  test("rejects garbage", () => assert.throws(() => parseDuration("5 minutes")));
});

describe("an unreadable slice folder", () => {
  test("holds the pass for a bounded number of polls, then becomes an invalid slice and the pass is healthy", async () => {
    const store = new MemoryStore();
    putSlice(store, "slices/", "2016");
    putSlice(store, "slices/", "2017");
    const d = new SliceDiscovery({
      store,
      prefix: "slices/",
      pollIntervalMs: 1000,
      maxFolderFailures: 3,
      random: () => 0.5,
    });
    // Every manifest read is refused (403): 2016 and 2017 both.
    store.fail("getText", { name: "AccessDenied", status: 403 }, 100);
    const first = await d.poll();
    assert.equal(first.health.ok, false);
    assert.equal((await d.poll()).health.ok, false);
    const third = await d.poll();
    assert.equal(third.health.ok, true, JSON.stringify(third.health));
    assert.deepEqual(
      third.newInvalid.map((i) => [i.id, i.reason]),
      [
        ["2016", "Unreadable"],
        ["2017", "Unreadable"],
      ],
    );
    assert.match(third.newInvalid[0]!.message, /S3AccessDenied/);
  });
});

// Issue 21, High 2: a short S3 blip never skips a slice for good.
describe("a slice folder failing with transient errors", () => {
  const setup = (unreadableAfterMs = 6 * 3600_000) => {
    const store = new MemoryStore();
    for (const id of ["2016", "2017", "2018"]) putSlice(store, "slices/", id);
    let now = Date.parse("2026-05-01T00:00:00Z");
    const d = new SliceDiscovery({
      store,
      prefix: "slices/",
      pollIntervalMs: 1000,
      random: () => 0.5,
      unreadableAfterMs,
      now: () => now,
    });
    let failing = true;
    const read = store.getText.bind(store);
    store.getText = async (key) => {
      if (failing && key === "slices/2017/manifest.json") {
        const err = Object.assign(new Error("Please reduce your request rate."), {
          name: "SlowDown",
          $metadata: { httpStatusCode: 503 },
        });
        throw new S3Failure(classifyS3Error(err, `get s3://data/${key}`), { cause: err });
      }
      return read(key);
    };
    return {
      d,
      advance: (ms: number) => {
        now += ms;
      },
      heal: () => {
        failing = false;
      },
    };
  };

  test("stays pending for as many polls as it fails, named with its key, and becomes valid once S3 answers", async () => {
    const w = setup();
    let r = await w.d.poll();
    for (let i = 0; i < 20; i++) {
      w.advance(10_000);
      r = await w.d.poll();
    }
    assert.deepEqual(r.invalid, [], "20 polls of 503s over 200 s do not make 2017 invalid");
    assert.deepEqual(ids(r.slices), ["2016", "2018"]);
    assert.deepEqual(
      r.unreadable.map((u) => [u.id, u.polls, u.permanent]),
      [["2017", 21, false]],
    );
    assert.match(r.unreadable[0]!.problem.message, /slices\/2017\/manifest\.json/);
    assert.equal(r.health.ok, false);
    assert.ok(r.nextPollMs >= 500, "polls back off");
    w.heal();
    r = await w.d.poll();
    assert.deepEqual(r.newSlices, ["2017"]);
    assert.deepEqual(ids(r.slices), ["2016", "2017", "2018"]);
    assert.deepEqual(r.unreadable, []);
    assert.equal(r.health.ok, true);
  });

  test("becomes an invalid slice only once transient failures outlast the bound", async () => {
    const w = setup(3600_000);
    let r = await w.d.poll();
    for (let i = 0; i < 5; i++) {
      w.advance(600_000);
      r = await w.d.poll();
    }
    assert.deepEqual(r.invalid, [], "50 minutes of failures: still pending");
    w.advance(600_000);
    r = await w.d.poll();
    assert.deepEqual(
      r.newInvalid.map((i) => [i.id, i.reason]),
      [["2017", "Unreadable"]],
    );
    assert.match(r.newInvalid[0]!.message, /^failing for 60m \(7 polls\): S3Throttled: .*slices\/2017\/manifest\.json/);
    assert.equal(r.health.ok, true);
  });
});
