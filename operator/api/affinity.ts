// core/v1 Affinity, as the API server validates it in a pod (k8s.io/kubernetes
// pkg/apis/core/validation: validateAffinity and the selectors it checks): a run's affinity is
// refused at admission, naming the field, instead of when its first Job is created. Shapes follow
// core/v1's OpenAPI; the rules the API server applies beyond the shape are CEL, so zod and the
// CRD enforce the same thing. List lengths are bounded (the API server needs bounds to cost CEL).
import { z } from "zod";
import { withRules } from "./cel.ts";
import { dnsLabel, labelValue, qualifiedName, qualifiedNameMap } from "./common.ts";

const MAX_TERMS = 8;
const MAX_EXPRESSIONS = 8;
const MAX_VALUES = 32;

const inOrNotIn = "self.operator in ['In', 'NotIn']";
const existence = "self.operator in ['Exists', 'DoesNotExist']";
const valuesFor = (operators: string) => [
  {
    rule: `!(${inOrNotIn}) || (has(self.values) && self.values.size() > 0)`,
    message: "values must be specified when operator is In or NotIn",
    fieldPath: ".values",
  },
  {
    rule: `!(${existence}) || !has(self.values) || self.values.size() == 0`,
    message: `values may not be specified when operator is ${operators}`,
    fieldPath: ".values",
  },
];

/** A node label expression (NodeSelectorRequirement in matchExpressions). */
const nodeSelectorRequirement = withRules(
  z.object({
    key: qualifiedName.describe("The node label key."),
    operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]),
    values: z.array(z.string().max(63)).max(MAX_VALUES).optional(),
  }),
  ...valuesFor("Exists or DoesNotExist"),
  {
    rule: "!(self.operator in ['Gt', 'Lt']) || (has(self.values) && self.values.size() == 1)",
    message: "operator Gt or Lt needs exactly one value",
    fieldPath: ".values",
  },
);

/** A node field expression (NodeSelectorRequirement in matchFields): metadata.name only. */
const nodeFieldSelectorRequirement = withRules(
  z.object({
    key: z.enum(["metadata.name"]).describe("The node field: only metadata.name is supported."),
    operator: z.enum(["In", "NotIn"]),
    values: z.array(z.string().max(253)).max(1).optional(),
  }),
  {
    rule: "has(self.values) && self.values.size() == 1",
    message: "a node field selector needs exactly one value",
    fieldPath: ".values",
  },
);

const nodeSelectorTerm = z.object({
  matchExpressions: z.array(nodeSelectorRequirement).max(MAX_EXPRESSIONS).optional(),
  matchFields: z.array(nodeFieldSelectorRequirement).max(MAX_EXPRESSIONS).optional(),
});

const labelSelectorRequirement = withRules(
  z.object({
    key: qualifiedName.describe("The label key."),
    operator: z.enum(["In", "NotIn", "Exists", "DoesNotExist"]),
    values: z.array(labelValue).max(MAX_VALUES).optional(),
  }),
  ...valuesFor("Exists or DoesNotExist"),
);

const labelSelector = z.object({
  matchLabels: qualifiedNameMap(labelValue, "label", MAX_EXPRESSIONS).optional(),
  matchExpressions: z.array(labelSelectorRequirement).max(MAX_EXPRESSIONS).optional(),
});

const labelKeys = z.array(qualifiedName).max(MAX_EXPRESSIONS);

const podAffinityTerm = withRules(
  z.object({
    labelSelector: labelSelector.optional(),
    namespaceSelector: labelSelector.optional(),
    namespaces: z.array(dnsLabel).max(MAX_VALUES).optional(),
    topologyKey: qualifiedName.describe(
      "Node label whose value defines co-location, e.g. topology.kubernetes.io/zone.",
    ),
    matchLabelKeys: labelKeys.optional(),
    mismatchLabelKeys: labelKeys.optional(),
  }),
  ...(["matchLabelKeys", "mismatchLabelKeys"] as const).map((keys) => ({
    rule: `!has(self.${keys}) || self.${keys}.size() == 0 || has(self.labelSelector)`,
    message: `${keys} must not be specified when labelSelector is not set`,
    fieldPath: `.${keys}`,
  })),
  {
    rule: "!has(self.matchLabelKeys) || !has(self.mismatchLabelKeys) || self.matchLabelKeys.all(k, !(k in self.mismatchLabelKeys))",
    message: "a key exists in both matchLabelKeys and mismatchLabelKeys",
    fieldPath: ".matchLabelKeys",
  },
);

const weight = z.int().min(1).max(100).describe("In the range 1-100.");
const podAffinity = z.object({
  requiredDuringSchedulingIgnoredDuringExecution: z.array(podAffinityTerm).max(MAX_TERMS).optional(),
  preferredDuringSchedulingIgnoredDuringExecution: z
    .array(z.object({ weight, podAffinityTerm }))
    .max(MAX_TERMS)
    .optional(),
});

export const affinity = z
  .object({
    nodeAffinity: z
      .object({
        requiredDuringSchedulingIgnoredDuringExecution: z
          .object({ nodeSelectorTerms: z.array(nodeSelectorTerm).min(1).max(MAX_TERMS) })
          .optional(),
        preferredDuringSchedulingIgnoredDuringExecution: z
          // No preference is an empty term, which the API server accepts: so do we.
          .array(z.object({ weight, preference: nodeSelectorTerm.optional() }))
          .max(MAX_TERMS)
          .optional(),
      })
      .optional(),
    podAffinity: podAffinity.optional(),
    podAntiAffinity: podAffinity.optional(),
  })
  .describe("A core/v1 Affinity, checked as the API server checks a pod's.");
