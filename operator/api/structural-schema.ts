// Turns zod's JSON Schema into a Kubernetes structural schema (CRD openAPIV3Schema).
// The API server rejects some JSON Schema that zod emits ($schema, additionalProperties: false
// beside properties, propertyNames, anyOf carrying types), so this walk rewrites those nodes.
import { z } from "zod";

type Json = Record<string, unknown>;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

export function toStructuralSchema(schema: z.ZodType): Json {
  const raw = z.toJSONSchema(schema, { target: "openapi-3.0", io: "input", unrepresentable: "throw" }) as Json;
  return rewrite(raw);
}

function rewrite(node: Json): Json {
  const out: Json = {};
  if (node["x-kubernetes-int-or-string"] === true) {
    // zod emits anyOf[int, string-with-pattern]; structural form is the flag plus the string's checks.
    const branches = (node.anyOf as Json[] | undefined) ?? [];
    const text = branches.find((b) => typeof b.pattern === "string");
    return dropUndefined({
      description: node.description,
      "x-kubernetes-int-or-string": true,
      pattern: text?.pattern,
      maxLength: text?.maxLength,
    });
  }
  if (node["x-kubernetes-preserve-unknown-fields"] === true) {
    return dropUndefined({
      description: node.description,
      type: "object",
      "x-kubernetes-preserve-unknown-fields": true,
    });
  }
  for (const [key, value] of Object.entries(node)) {
    switch (key) {
      case "$schema":
      case "id":
      case "$id":
      case "propertyNames":
        continue;
      case "additionalProperties":
        if (value === false) continue; // structural schemas prune unknown fields already
        out[key] = typeof value === "object" && value !== null ? rewrite(value as Json) : value;
        continue;
      case "properties": {
        const props: Json = {};
        for (const [name, child] of Object.entries(value as Json)) props[name] = rewrite(child as Json);
        out[key] = props;
        continue;
      }
      case "items":
        out[key] = rewrite(value as Json);
        continue;
      case "minimum":
        if (value === -MAX_SAFE) continue;
        out[key] = value;
        continue;
      case "maximum":
        if (value === MAX_SAFE) continue;
        out[key] = value;
        continue;
      case "anyOf":
      case "oneOf":
      case "allOf":
        throw new Error(`${key} is not structural; model it another way: ${JSON.stringify(node).slice(0, 200)}`);
      default:
        out[key] = value;
    }
  }
  return out;
}

function dropUndefined(obj: Json): Json {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

/** Plain JSON Schema (draft 2020-12) for non-Kubernetes consumers such as the trainer. */
export function toJsonSchema(schema: z.ZodType, id: string): Json {
  const raw = z.toJSONSchema(schema, { target: "draft-2020-12", io: "input", unrepresentable: "throw" }) as Json;
  return { $schema: raw.$schema, $id: id, ...raw };
}
