// Kubernetes resource quantities (resource.Quantity) compared exactly, as the API server does:
// 1Gi is 1073741824, 1500Mi is 1572864000, 500m is 1/2. cel.ts offers them to CEL rules as the
// API server's quantity library (quantity(s).isGreaterThan(...)), so a rule reads the same in the
// CRD and in zod.

/** A quantity as an exact fraction num/den (den > 0). */
export type Quantity = { readonly num: bigint; readonly den: bigint };

const BINARY: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };
const DECIMAL: Record<string, number> = { n: -9, u: -6, m: -3, "": 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const FORM = /^([+-]?)([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE]([+-]?[0-9]+))?$/;

/** The quantity `s` spells, or undefined when it is not one (1.5Gi, 500m, 2e3, 32). */
export function parseQuantity(s: string | number | bigint): Quantity | undefined {
  const m = FORM.exec(String(s));
  if (!m) return undefined;
  const [, sign, number, suffix, exponent] = m;
  const [whole, fraction = ""] = number!.split(".");
  let num = BigInt(`${whole || "0"}${fraction}`) * (sign === "-" ? -1n : 1n);
  let den = 10n ** BigInt(fraction.length);
  const scale10 = exponent !== undefined ? Number(exponent) : (DECIMAL[suffix ?? ""] ?? 0);
  if (suffix !== undefined && suffix in BINARY) num *= 2n ** BigInt(BINARY[suffix]!);
  else if (Math.abs(scale10) > 1000) return undefined;
  else if (scale10 >= 0) num *= 10n ** BigInt(scale10);
  else den *= 10n ** BigInt(-scale10);
  return { num, den };
}

/** -1, 0 or 1 as a is less than, equal to or greater than b. */
export function compareQuantities(a: Quantity, b: Quantity): -1 | 0 | 1 {
  const l = a.num * b.den;
  const r = b.num * a.den;
  return l < r ? -1 : l > r ? 1 : 0;
}
