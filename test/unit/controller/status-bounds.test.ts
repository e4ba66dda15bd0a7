// Bounded status (issue 12): whatever the controller observed, the status it writes stays small and
// valid against the CRD's own limits, and deciding again on it changes nothing.
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  continualClipRunStatus,
  STATUS_LIMITS,
  type ContinualClipRunStatus,
  type RoundStatus,
} from "../../../operator/api/continual-clip-run.ts";
import { decide } from "../../../operator/controller/decide.ts";
import {
  boundRounds,
  boundSliceStatus,
  boundStatus,
  boundText,
  compactRound,
  describeSlices,
  detailedRound,
} from "../../../operator/controller/status-bounds.ts";
import {
  longSliceId,
  statusBytes,
  statusUpperBound,
  WORST_NOW,
  worstCase,
  worstStatus,
} from "../../support/worst-status.ts";

const KiB = 1024;
const jsonBytes = (s: string) => Buffer.byteLength(JSON.stringify(s)) - 2;
const ids = (n: number) => Array.from({ length: n }, (_, i) => String(2000 + i));

test("texts are cut to their bound in UTF-8 JSON bytes, marked with '...', never splitting a character", () => {
  const cases: [string, number, string][] = [
    ["short", 10, "short"],
    ["a".repeat(20), 10, "aaaaaaa..."],
    ["é".repeat(20), 10, "ééé..."],
    ["😀".repeat(20), 10, "😀..."],
    ["\u0001".repeat(20), 10, "\u0001..."],
    ['"'.repeat(20), 10, '"""...'],
  ];
  for (const [s, max, want] of cases) assert.equal(boundText(s, max), want, JSON.stringify(s));
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 300 }), fc.integer({ min: 3, max: 200 }), (s, max) => {
      const b = boundText(s, max);
      assert.ok(jsonBytes(b) <= max, `${jsonBytes(b)} > ${max}`);
      assert.ok(b.length <= max);
      assert.ok(b === s || (b.endsWith("...") && s.startsWith(b.slice(0, -3))));
    }),
  );
});

test("a round over 3000 slices lists the newest 10 with its count and its oldest slice", () => {
  const all = ids(3000);
  const r = detailedRound({ index: 4, slices: all, replay: "CumulativeAll", phase: "Training" });
  assert.deepEqual(r.slices, all.slice(-10));
  assert.equal(r.sliceCount, 3000);
  assert.equal(r.firstSlice, "2000");
  assert.equal(describeSlices(r), "3000 slices, 2000 to 4999");
  assert.deepEqual(detailedRound(r), r, "bounding twice changes nothing");
  const one = detailedRound({ index: 0, slices: ["2016"], replay: "CumulativeAll", phase: "Promoted" });
  assert.deepEqual([one.slices, one.sliceCount, one.firstSlice], [["2016"], 1, undefined]);
  assert.equal(describeSlices(one), "2016");
});

test("rounds beyond the detail budget are compact; the newest is always in full detail", () => {
  const big = (index: number): RoundStatus => ({
    index,
    slices: ids(3000),
    replay: "CumulativeAll",
    phase: "Rejected",
    reason: "GatesFailed",
    message: "m".repeat(5000),
    metrics: { "retrieval.id.meanRecallAt1": 0.5 },
  });
  const rounds = boundRounds(Array.from({ length: 100 }, (_, i) => big(i)));
  assert.equal(rounds.length, 100);
  const newest = rounds[99]!;
  assert.equal(newest.message?.length, STATUS_LIMITS.message);
  assert.deepEqual(rounds[0], { index: 0, phase: "Rejected", sliceCount: 3000, reason: "GatesFailed" });
  const promoted: RoundStatus = {
    index: 1,
    slices: ["2016"],
    phase: "Promoted",
    reason: "GatesPassed",
    promotedVersion: 3,
  };
  assert.deepEqual(compactRound(promoted), { index: 1, phase: "Promoted", sliceCount: 1, promotedVersion: 3 });
  assert.deepEqual(compactRound(rounds[0]!), rounds[0]);
  const detailed = rounds.filter((r) => r.slices);
  assert.ok(detailed.length >= 1 && detailed.length < 100);
  assert.ok(statusBytes(detailed) <= STATUS_LIMITS.detailBytes + 2);
  assert.deepEqual(boundRounds(rounds), rounds, "bounding twice changes nothing");
});

test("invalid and failed slices keep the newest entries and count them all", () => {
  const invalid = ids(500).map((id) => ({ id, reason: `ManifestInvalid: ${"x".repeat(1000)}` }));
  const failed = ids(30).map((id) => ({ id, reason: "BackoffLimitExceeded: oom", attempts: 3 }));
  const s = boundSliceStatus({ discovered: 3, consumed: 1, invalid, failed });
  assert.equal(s.invalidCount, 500);
  assert.deepEqual(
    s.invalid?.map((i) => i.id),
    ids(500).slice(-10),
  );
  assert.equal(s.invalid?.[0]?.reason.length, STATUS_LIMITS.listReason);
  assert.equal(s.failedCount, 30);
  assert.equal(s.failed?.length, 10);
  assert.deepEqual(boundSliceStatus(s), s);
  assert.deepEqual(boundSliceStatus({ discovered: 0, consumed: 0 }), { discovered: 0, consumed: 0 });
});

test("the worst case (historyLimit 1000, Latest rounds over 3000 slices) is under 128 KiB and valid", () => {
  const status = worstStatus();
  const size = statusBytes(status);
  assert.ok(size <= 128 * KiB, `worst-case status is ${size} bytes`);
  assert.equal(status.rounds?.length, 1000);
  assert.equal(status.rounds?.at(-1)?.sliceCount, 3000);
  assert.equal(status.slices?.invalidCount, 5000);
  // One slice given up per failed round of one slice (rounds 7, 15, ..., 991).
  assert.equal(status.slices?.failedCount, 124);
  continualClipRunStatus.parse(status);
  const progressing = status.conditions?.find((c) => c.type === "Progressing");
  assert.equal(progressing?.message, `round 999 on 3000 slices, ${longSliceId("t", 0)} to ${longSliceId("t", 2999)}`);
});

test("with every bounded field at its limit at once, even 16-digit numbers, status stays under 200 KiB", () => {
  const bound = statusUpperBound();
  assert.ok(bound.total < 200 * KiB, `upper bound ${bound.total} bytes`);
  assert.ok(statusBytes(worstStatus({ rounds: 200, slicesPerRound: 20 })) < bound.total);
});

test("decisions use every slice of a round, not the status's bounded list", () => {
  const { run, observed } = worstCase({ rounds: 3, slicesPerRound: 40 });
  const first = decide(run, observed, WORST_NOW);
  // Written and read back: the next decision starts from the bounded status and keeps it as it is.
  const again = decide({ ...run, status: first.status }, observed, WORST_NOW);
  assert.equal(again.status, undefined);
  assert.equal(first.status?.slices?.consumed, 40, "every slice of the trained rounds is consumed");
});

// Any observations: free-form reasons and messages of any characters and length (failed.json,
// eval.json, S3 errors), any number of rounds, slices per round and invalid slices.
test("a status decided from any observation is valid against the CRD, bounded, and stable", () => {
  fc.assert(
    fc.property(
      fc.record({
        rounds: fc.integer({ min: 1, max: 120 }),
        slicesPerRound: fc.integer({ min: 1, max: 40 }),
        invalid: fc.integer({ min: 0, max: 40 }),
        reason: fc.string({ unit: "binary", maxLength: 400 }),
        message: fc.string({ unit: "binary", maxLength: 3000 }),
      }),
      (o) => {
        const { run, observed } = worstCase(o);
        const status = decide(run, observed, WORST_NOW).status as ContinualClipRunStatus;
        continualClipRunStatus.parse(status);
        assert.ok(statusBytes(status) <= 128 * KiB);
        assert.deepEqual(boundStatus(status), status);
        assert.equal(decide({ ...run, status }, observed, WORST_NOW).status, undefined);
      },
    ),
    { numRuns: 40 },
  );
});
