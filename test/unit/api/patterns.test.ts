// Every pattern is read by two engines, JavaScript (zod, and CEL's matches() in the operator) and RE2
// (the API server), and must mean the same to both (issue 21: JS `\s` is not RE2 `\s`). These
// constructs differ: `\s`/`\S` (JavaScript adds \v, NBSP, U+2028 and the Unicode spaces), `.`
// outside a class (JavaScript also stops at \r, U+2028, U+2029), `\b`/`\B` and `\p{}` (Unicode
// rules differ), lookaround and backreferences (RE2 has none).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { buildCrd } from "../../../operator/api/gen-artifacts.ts";
import { continualClipRunSpec } from "../../../operator/api/continual-clip-run.ts";

type Json = Record<string, any>;

/** Every `pattern` of the CRD and every literal passed to CEL's matches(), with where it is. */
function patterns(node: unknown, at = "", out: [string, string][] = []): [string, string][] {
  if (Array.isArray(node)) for (const [i, n] of node.entries()) patterns(n, `${at}[${i}]`, out);
  else if (node && typeof node === "object") {
    for (const [k, v] of Object.entries(node as Json)) {
      if (k === "pattern" && typeof v === "string") out.push([at, v]);
      else if (k === "rule" && typeof v === "string")
        for (const m of v.matchAll(/matches\('((?:[^'\\]|\\.)*)'\)/g)) out.push([`${at} (CEL)`, m[1]!]);
      else patterns(v, `${at}.${k}`, out);
    }
  }
  return out;
}

/** Constructs JavaScript and RE2 read differently, found outside character classes or inside them. */
function divergent(pattern: string): string[] {
  const found: string[] = [];
  let inClass = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "\\") {
      const e = pattern[i + 1] ?? "";
      if ("sSbBpPk".includes(e) || /[1-9]/.test(e)) found.push(`\\${e}`);
      i++;
      continue;
    }
    if (inClass) {
      if (c === "]") inClass = false;
      continue;
    }
    if (c === "[") inClass = true;
    else if (c === ".") found.push(". outside a class");
    else if (c === "(" && pattern[i + 1] === "?") found.push("(?");
  }
  return found;
}

describe("patterns read the same in JavaScript and RE2", () => {
  const all = patterns(buildCrd());

  test("the CRD has patterns to check (the walk is not vacuous)", () => {
    assert.ok(all.length > 20, `${all.length} patterns`);
    assert.ok(
      all.some(([, p]) => p.includes("x00")),
      "the key prefix pattern is among them",
    );
  });

  test("no pattern uses a construct the two engines read differently", () => {
    const bad = all.flatMap(([at, p]) => divergent(p).map((d) => `${at}: ${d} in ${p}`));
    assert.deepEqual(bad, []);
  });

  test("whitespace and line breaks are refused or accepted alike: by the ASCII range, not by \\s or .", () => {
    const parse = (prefix: string, endpoint: string, checkpoint: string) =>
      continualClipRunSpec.safeParse({
        source: { s3: { bucket: "data", prefix, endpoint } },
        model: { architecture: "ViT-B-16", initialCheckpoint: checkpoint },
        strategy: { samplesPerRound: 1000 },
        trainer: { image: "t:1" },
        artifacts: { s3: { bucket: "runs" } },
      }).success;
    // RE2 does not count \v as \s nor \r as a line end for `.`: both engines now refuse them.
    assert.equal(parse("a\vb/", "https://s3.example.com", "s3://models/a.pt"), false);
    assert.equal(parse("slices/", "https://s3.example\v.com", "s3://models/a.pt"), false);
    assert.equal(parse("slices/", "https://s3.example.com", "s3://models/a\rb.pt"), false);
    // JavaScript counts NBSP and U+2028 as whitespace or line ends, RE2 does not: both now accept them.
    assert.equal(parse("a\u00a0b/", "https://s3.example.com/x\u2028y", "s3://models/a\u2028b.pt"), true);
  });
});
