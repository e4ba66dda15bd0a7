// Prints the serialized size of the largest status a run can have (test/support/worst-status.ts):
// historyLimit 1000, every round a Latest round over STATUS_SLICES (default 3000) slices of
// 128-character ids, every optional field set, thousands of invalid and failed slices.
//   npm run -s bench:status-size
import { statusBytes, statusUpperBound, worstStatus } from "../test/support/worst-status.ts";

const slicesPerRound = Number(process.env.STATUS_SLICES ?? 3000);
const rounds = Number(process.env.STATUS_ROUNDS ?? 1000);
const t0 = performance.now();
const status = worstStatus({ rounds, slicesPerRound });
const ms = performance.now() - t0;
const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
const part = (v: unknown) => (v === undefined ? 0 : statusBytes(v));
const roundBytes = (status.rounds ?? []).map((r) => statusBytes(r));
console.log(
  `worst-case status: ${rounds} rounds observed, ${slicesPerRound} slices per round (decide() ${ms.toFixed(0)} ms)`,
);
console.log(`  total            ${kib(statusBytes(status))} (${statusBytes(status)} bytes)`);
console.log(`  rounds           ${kib(part(status.rounds))} in ${status.rounds?.length ?? 0} entries`);
if (roundBytes.length) {
  console.log(`    newest entry   ${kib(roundBytes[roundBytes.length - 1]!)}, largest ${kib(Math.max(...roundBytes))}`);
  console.log(`    oldest entry   ${kib(roundBytes[0]!)}`);
}
console.log(`  conditions       ${kib(part(status.conditions))}`);
console.log(`  slices           ${kib(part(status.slices))}`);
console.log(
  `  everything else  ${kib(statusBytes({ ...status, rounds: undefined, conditions: undefined, slices: undefined }))}`,
);

const u = statusUpperBound();
console.log(`upper bound, every field at its limit at once: ${kib(u.total)} (${u.total} bytes)`);
console.log(
  `  1000 rounds     ${kib(u.rounds)}: compact entries ${u.compact} bytes, a detailed one ${kib(u.detailed)}`,
);
console.log(`  4 conditions    ${kib(u.conditions)}, slices ${kib(u.slices)}, the rest ${kib(u.rest)}`);
