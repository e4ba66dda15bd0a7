// Deterministic child names: a retry computes the same name, so it can never create a twin.
import { createHash } from "node:crypto";

export const MAX_NAME = 63;

function shortHash(s: string): string {
  return createHash("sha256").update(s).digest("hex").slice(0, 6);
}

/** Fits `<base><suffix>` into 63 characters, replacing the tail of base by a hash when too long. */
export function fitName(base: string, suffix: string): string {
  const full = `${base}${suffix}`;
  if (full.length <= MAX_NAME) return full;
  const keep = MAX_NAME - suffix.length - 7;
  return `${base.slice(0, keep).replace(/[-.]+$/, "")}-${shortHash(base)}${suffix}`;
}

export const roundLabel = (round: number) => String(round).padStart(4, "0");

/** `<run>-r0005-train`, shortened with a hash to fit 63 characters. */
export const trainJobName = (run: string, round: number) => fitName(run, `-r${roundLabel(round)}-train`);

/** `<run>-r0005-eval`: the round's evaluation Job. */
export const evalJobName = (run: string, round: number) => fitName(run, `-r${roundLabel(round)}-eval`);

/** Headless Service giving an Indexed Job's pods stable hostnames for torchrun rendezvous. */
export const trainServiceName = (run: string, round: number) => fitName(run, `-r${roundLabel(round)}-rdzv`);

/** Label values are limited to 63 characters too. */
export const runLabelValue = (run: string) => fitName(run, "");
