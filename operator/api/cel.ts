// Rules that one field's type cannot express (cross-field checks, friendly messages) are written
// once, in CEL. The generated CRD carries them as x-kubernetes-validations, so the API server
// enforces them at admission; zod evaluates the very same expressions with a JavaScript CEL
// interpreter, so the operator (which parses every spec it reads), the tests and the API server
// agree. Keep to the CEL the API server offers: the standard macros and the Kubernetes string
// extensions (split, lowerAscii, ...), nothing the JavaScript interpreter adds on top.
import { Environment } from "@marcbachmann/cel-js";
import { z } from "zod";
import { compareQuantities, parseQuantity, type Quantity } from "./quantity.ts";

/** A value of the API server's CEL quantity library (k8s.io/apiserver/pkg/cel/library/quantity.go). */
class CelQuantity {
  readonly q: Quantity;
  constructor(q: Quantity) {
    this.q = q;
  }
}

const quantityOf = (s: string): CelQuantity => {
  const q = parseQuantity(s);
  if (!q) throw new Error(`invalid quantity ${s}`); // the API server errors too, and the rule fails
  return new CelQuantity(q);
};
const compare = (name: string, fn: (order: -1 | 0 | 1) => boolean) => ({
  name,
  receiverType: "Quantity",
  returnType: "bool",
  params: [{ name: "other", type: "Quantity" }],
  handler: (a: CelQuantity, b: CelQuantity) => fn(compareQuantities(a.q, b.q)),
});

/**
 * The CEL the API server offers CRD rules: the standard macros and the Kubernetes extensions the
 * interpreter has, plus the quantity library (quantity, isQuantity, isGreaterThan, isLessThan,
 * compareTo), so resource rules compare 1Gi and 1500Mi as numbers in both enforcers.
 */
const environment = new Environment({ unlistedVariablesAreDyn: true })
  .registerType("Quantity", CelQuantity)
  .registerFunction("quantity(string): Quantity", quantityOf)
  .registerFunction("isQuantity(string): bool", (s: string) => parseQuantity(s) !== undefined)
  .registerFunction(compare("isGreaterThan", (o) => o > 0))
  .registerFunction(compare("isLessThan", (o) => o < 0))
  .registerFunction({
    name: "compareTo",
    receiverType: "Quantity",
    returnType: "int",
    params: [{ name: "other", type: "Quantity" }],
    handler: (a: CelQuantity, b: CelQuantity) => BigInt(compareQuantities(a.q, b.q)),
  });

/** A CEL rule as the CRD carries it (x-kubernetes-validations). `self` is the value it is attached to. */
export type CelRule = {
  rule: string;
  message: string;
  /** Where the error points, relative to `self`, e.g. ".gpusPerNode"; default: the value itself. */
  fieldPath?: string;
  // The API server prints a fixed text instead of `message` for the other reasons ("Duplicate value").
  reason?: "FieldValueInvalid" | "FieldValueForbidden";
};

type Json = Record<string, unknown>;

export const RULES_KEY = "x-kubernetes-validations";

/**
 * Attaches CEL rules to a schema: the CRD generator emits them, and zod evaluates them after the
 * schema's own checks pass (as the API server does after the OpenAPI checks).
 */
export function withRules<T extends z.ZodType>(schema: T, ...rules: CelRule[]): T {
  const compiled = rules.map((r) => ({
    ...r,
    evaluate: environment.parse(r.rule),
    path: fieldPathToPath(r.fieldPath),
  }));
  let shape: Json | undefined;
  const checked = schema.check((payload) => {
    // Like the API server, judge only values that passed their schema: a rule over a wrongly typed
    // value would only repeat the schema's error in worse words.
    if (payload.issues.length > 0) return;
    // Computed on first use: the schema's JSON form says which numbers are CEL ints.
    shape ??= z.toJSONSchema(schema, { io: "output", unrepresentable: "any" }) as Json;
    const self = toCel(payload.value, shape);
    for (const r of compiled) {
      let ok = false;
      try {
        ok = r.evaluate({ self }) === true;
      } catch {
        ok = false; // the API server rejects a value whose rule errors at runtime too
      }
      // A fresh path each time: zod prefixes the parents' keys onto it in place.
      if (!ok) payload.issues.push({ code: "custom", message: r.message, path: [...r.path], input: payload.value });
    }
  });
  const existing = (z.globalRegistry.get(schema) ?? {}) as Json;
  const previous = (existing[RULES_KEY] as CelRule[] | undefined) ?? [];
  return checked.meta({ ...existing, [RULES_KEY]: [...previous, ...rules] }) as T;
}

/** ".a.b" -> ["a", "b"]; the fieldPath syntax the CRD accepts, restricted to dotted names. */
function fieldPathToPath(fieldPath: string | undefined): string[] {
  if (!fieldPath) return [];
  if (!/^(\.[A-Za-z_][A-Za-z0-9_]*)+$/.test(fieldPath)) throw new Error(`unsupported fieldPath ${fieldPath}`);
  return fieldPath.slice(1).split(".");
}

/** A parsed value as CEL sees it: integers of integer fields become CEL ints (bigint), the rest stays. */
function toCel(value: unknown, schema: Json | undefined): unknown {
  if (value === undefined || value === null) return value;
  if (typeof value === "number") return isInteger(schema) && Number.isInteger(value) ? BigInt(value) : value;
  if (Array.isArray(value)) return value.map((v) => toCel(v, schema?.items as Json | undefined));
  if (typeof value === "object") {
    const props = (schema?.properties ?? {}) as Record<string, Json>;
    const extra = typeof schema?.additionalProperties === "object" ? (schema.additionalProperties as Json) : undefined;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      // An absent optional field is absent to CEL too (has() is false).
      if (v !== undefined) out[k] = toCel(v, props[k] ?? extra);
    }
    return out;
  }
  return value;
}

function isInteger(schema: Json | undefined): boolean {
  if (!schema) return false;
  if (schema.type === "integer") return true;
  const branches = (schema.anyOf ?? schema.oneOf) as Json[] | undefined;
  return branches?.some((b) => b.type === "integer") ?? false;
}
