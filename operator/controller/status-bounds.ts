// Keeps a run's status small, whatever the run did: every status patch sends it whole, etcd stores
// it and every watcher of runs receives it, so it stays well under 256 KiB (etcd refuses requests
// over 1.5 MiB by default). Decisions never read these capped lists: they use the
// observed world (plan.json's full newSlices, failed.json, discovery), which stays in S3. Pure.
//
// The bounds (STATUS_LIMITS in the API, which the CRD also checks), and what a reader finds instead of
// the dropped detail (docs/scale.md, "Bounded status"):
//   rounds[].slices      the newest STATUS_LIMITS.roundSlices ids; sliceCount and firstSlice tell the rest
//   rounds[]             full detail for the newest rounds within detailBytes; older ones compact
//                        (index, phase, sliceCount, and promotedVersion or else reason)
//   slices.invalid/failed the newest sliceList entries; invalidCount and failedCount tell the rest
//   reasons, messages    truncated to reason / message / listReason / gateMessage characters
import { STATUS_LIMITS, type ContinualClipRunStatus, type RoundStatus } from "../api/continual-clip-run.ts";

const ELLIPSIS = "...";

/** Bytes of one UTF-16 code unit (or surrogate pair, counted on its high half) in UTF-8 JSON. */
function jsonUnitBytes(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c === 0x22 || c === 0x5c) return 2;
  if (c >= 0x20 && c < 0x7f) return 1;
  if (c === 0x08 || c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d) return 2;
  if (c < 0x20) return 6;
  if (c < 0x800) return 2;
  if (c >= 0xd800 && c <= 0xdbff) {
    const next = s.charCodeAt(i + 1);
    return next >= 0xdc00 && next <= 0xdfff ? 4 : 6;
  }
  if (c >= 0xdc00 && c <= 0xdfff) return 6; // a lone low surrogate; its pair's high half counted 4
  return 3;
}

/**
 * `s` cut so that it takes at most `max` bytes as UTF-8 JSON (so at most `max` characters, the
 * CRD's maxLength), marked with "..." when cut; a surrogate pair is never split.
 */
export function boundText(s: string, max: number): string {
  if (s.length <= max && /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/.test(s)) return s;
  let used = 0;
  let fits = 0; // code units that fit in max
  let fitsCut = 0; // code units that fit in max with the ellipsis after them
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const pairTail = c >= 0xdc00 && c <= 0xdfff && i > 0 && jsonUnitBytes(s, i - 1) === 4;
    const b = pairTail ? 0 : jsonUnitBytes(s, i);
    if (used + b > max) return s.slice(0, fitsCut) + ELLIPSIS;
    used += b;
    const whole = !(c >= 0xd800 && c <= 0xdbff && b === 4);
    if (whole) {
      fits = i + 1;
      if (used + ELLIPSIS.length <= max) fitsCut = fits;
    }
  }
  return fits === s.length ? s : s.slice(0, fitsCut) + ELLIPSIS;
}

/** "2016", "2016, 2017, 2018" or "3000 slices, 2016 to 2999": a round's slices for a message, bounded. */
export function describeSlices(r: Pick<RoundStatus, "slices" | "sliceCount" | "firstSlice">): string {
  const ids = r.slices ?? [];
  const count = r.sliceCount ?? ids.length;
  if (count === ids.length && count <= 3) return ids.join(", ");
  if (ids.length === 0) return `${count} slices`;
  return `${count} slices, ${r.firstSlice ?? ids[0]} to ${ids[ids.length - 1]}`;
}

/** The first STATUS_LIMITS.metrics metrics whose paths fit (eval.json and the alias come from S3). */
function boundMetrics(m: Record<string, number>): Record<string, number> {
  const named = Object.entries(m).filter(([k]) => k.length <= STATUS_LIMITS.metricName);
  return Object.fromEntries(named.slice(0, STATUS_LIMITS.metrics));
}

const boundOptional = (s: string | undefined, max: number) => (s === undefined ? undefined : boundText(s, max));

/**
 * A round entry in full detail: slice list, texts and the lists read from S3 documents (eval.json,
 * verdict.json) capped; every other field as decided.
 */
export function detailedRound(r: RoundStatus): RoundStatus {
  const L = STATUS_LIMITS;
  const slices = r.slices ?? [];
  const sliceCount = r.sliceCount ?? slices.length;
  const kept = slices.slice(-L.roundSlices).map((id) => boundText(id, 128));
  const first = r.firstSlice ?? (kept.length < slices.length ? slices[0] : undefined);
  const texts = {
    reason: boundOptional(r.reason, L.reason),
    message: boundOptional(r.message, L.message),
    initCheckpoint: boundOptional(r.initCheckpoint, L.uri),
    checkpoint: boundOptional(r.checkpoint, L.uri),
    startedAt: boundOptional(r.startedAt, L.time),
    finishedAt: boundOptional(r.finishedAt, L.time),
  };
  const out: RoundStatus = { ...r, slices: kept, sliceCount };
  for (const [k, v] of Object.entries(texts)) if (v !== undefined) Object.assign(out, { [k]: v });
  delete out.firstSlice;
  if (first !== undefined && first !== kept[0]) out.firstSlice = boundText(first, 128);
  if (r.metrics) out.metrics = boundMetrics(r.metrics);
  if (r.gates) {
    out.gates = r.gates.slice(0, L.gates).map((g) => ({
      ...g,
      metric: boundText(g.metric, L.metricName),
      ...(g.message === undefined ? {} : { message: boundText(g.message, L.gateMessage) }),
    }));
  }
  return out;
}

/**
 * An older round in a few dozen bytes: what it was, and how it ended: the version it became, or
 * else why (a promoted round's reason is always GatesPassed).
 */
export function compactRound(r: RoundStatus): RoundStatus {
  const ended =
    r.promotedVersion !== undefined
      ? { promotedVersion: r.promotedVersion }
      : r.reason !== undefined
        ? { reason: boundText(r.reason, STATUS_LIMITS.reason) }
        : {};
  return { index: r.index, phase: r.phase, sliceCount: r.sliceCount ?? r.slices?.length ?? 0, ...ended };
}

const bytes = (v: unknown) => Buffer.byteLength(JSON.stringify(v));

/**
 * status.rounds, bounded: the newest rounds in full detail while they fit detailBytes (always the
 * newest, which kubectl's Last Round and Gates columns show), the rest compact. Idempotent.
 */
export function boundRounds(rounds: readonly RoundStatus[]): RoundStatus[] {
  const out: RoundStatus[] = new Array(rounds.length);
  let budget: number = STATUS_LIMITS.detailBytes;
  let detailed = true;
  for (let i = rounds.length - 1; i >= 0; i--) {
    const r = rounds[i]!;
    // A compact entry (no slices) stays compact, and so does everything older.
    if (r.slices === undefined) detailed = false;
    if (detailed) {
      const d = detailedRound(r);
      const size = bytes(d);
      if (size <= budget || i === rounds.length - 1) {
        out[i] = d;
        budget -= size;
        continue;
      }
      detailed = false;
    }
    out[i] = compactRound(r);
  }
  return out;
}

type SliceStatus = NonNullable<ContinualClipRunStatus["slices"]>;

/** The newest entries of a list, reasons cut, and how many there are (kept from a bounded list). */
function newest<T extends { reason: string }>(list: readonly T[] | undefined, count: number | undefined) {
  if (!list?.length) return undefined;
  const kept = list.slice(-STATUS_LIMITS.sliceList);
  return {
    list: kept.map((e) => ({ ...e, reason: boundText(e.reason, STATUS_LIMITS.listReason) })),
    count: count ?? list.length,
  };
}

/** status.slices with the newest invalid and failed entries and their totals. Idempotent. */
export function boundSliceStatus(s: SliceStatus): SliceStatus {
  const { invalid, invalidCount, failed, failedCount, ...rest } = s;
  const inv = newest(invalid, invalidCount);
  const fail = newest(failed, failedCount);
  return {
    ...rest,
    ...(inv ? { invalid: inv.list, invalidCount: inv.count } : {}),
    ...(fail ? { failed: fail.list, failedCount: fail.count } : {}),
  };
}

/** The status as written: every list and text bounded (conditions are bounded by setCondition). */
export function boundStatus(s: ContinualClipRunStatus): ContinualClipRunStatus {
  const p = s.promoted;
  return {
    ...s,
    ...(s.rounds ? { rounds: boundRounds(s.rounds) } : {}),
    ...(s.slices ? { slices: boundSliceStatus(s.slices) } : {}),
    ...(p
      ? {
          promoted: {
            ...p,
            uri: boundText(p.uri, STATUS_LIMITS.uri),
            promotedAt: boundText(p.promotedAt, STATUS_LIMITS.time),
            ...(p.metrics ? { metrics: boundMetrics(p.metrics) } : {}),
          },
        }
      : {}),
  };
}
