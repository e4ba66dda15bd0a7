// spec.promotion.git: the Git repository a promotion is written to, so Argo CD or Flux rolls the
// promoted model out to serving (docs/gitops.md). Its own module beside continual-clip-run.ts,
// which holds the field.
import { z } from "zod";
import { withRules } from "./cel.ts";
import { dnsSubdomain } from "./common.ts";

/** Variables of spec.promotion.git.commitMessage, as {{name}}. */
export const COMMIT_MESSAGE_VARIABLES = [
  "run",
  "namespace",
  "name",
  "alias",
  "version",
  "round",
  "uri",
  "action",
  "gates",
  "metrics",
] as const;

export const DEFAULT_COMMIT_MESSAGE =
  "{{name}}: {{action}} {{alias}} to v{{version}} (round {{round}})\n\n" +
  "ContinualClipRun {{run}}\nModel: {{uri}}\n\nGates:\n{{gates}}\n\nMetrics:\n{{metrics}}\n";

// Patterns avoid backslashes so they read the same in JavaScript, RE2 (OpenAPI pattern) and CEL;
// whitespace is spelled as the ASCII range (JavaScript's \s is not RE2's: api/common.ts).
// biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII controls are the characters refused
const GIT_URL = /^https:[/][/][^/?#\x00-\x20\x7f]+([/][^?#\x00-\x20\x7f]*)?$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: the ASCII controls are the characters refused
const EMAIL = /^[^@<>\x00-\x20\x7f]+@[^@<>\x00-\x20\x7f]+$/;
const TEMPLATE_PATTERN = `^([^{]|[{][^{]|[{][{] ?(${COMMIT_MESSAGE_VARIABLES.join("|")}) ?[}][}])*[{]?$`;

/**
 * A branch name: characters of common branch names, and the rules of git check-ref-format that
 * apply to them (no '..', '//', no segment starting with '.', no trailing '/', '.' or '.lock').
 */
export const gitBranch = withRules(
  z
    .string()
    .min(1)
    .max(255)
    .regex(/^[A-Za-z0-9._/-]+$/, "a branch name: letters, digits, '.', '_', '-', '/'"),
  {
    rule: "!self.contains('..') && !self.contains('//') && !self.startsWith('/') && !self.startsWith('-') && !self.startsWith('.') && !self.contains('/.') && !self.endsWith('/') && !self.endsWith('.') && !self.endsWith('.lock')",
    message:
      "must be a valid branch name (git check-ref-format): no '..' or '//', no segment starting with '.', not starting with '-' or '/', not ending in '/', '.' or '.lock'",
  },
);

/** A YAML file in the repository: a relative path of plain segments, never inside .git. */
export const gitFilePath = withRules(
  z
    .string()
    .min(1)
    .max(512)
    .regex(
      /^[A-Za-z0-9._-]+([/][A-Za-z0-9._-]+)*[.](yaml|yml)$/,
      "a relative path of a .yaml or .yml file: segments of [A-Za-z0-9._-] separated by '/'",
    ),
  {
    rule: "!self.split('/').exists(s, s == '.' || s == '..') && !self.startsWith('.git/')",
    message: "must not contain '.' or '..' segments or point into .git",
  },
);

export const gitUrl = withRules(z.string().max(512).regex(GIT_URL, "an https:// URL without query or fragment"), {
  rule: "!self.matches('^https://[^/]*@')",
  message: "must not carry credentials (user:password@host): put them in the Secret named by secretRef",
});

export const gitTargetSpec = withRules(
  z.object({
    url: gitUrl.describe(
      "HTTPS URL of the repository, e.g. https://github.com/org/serving.git. No credentials: they come from secretRef.",
    ),
    branch: gitBranch
      .default("main")
      .describe("Branch the serving manifests are deployed from; the commit is made on top of it."),
    pushBranch: gitBranch
      .optional()
      .describe(
        "Branch the commit is pushed to, when not branch (a pull request reviews the rollout). Created from branch when it does not exist; never force-pushed.",
      ),
    path: gitFilePath
      .optional()
      .describe(
        "YAML file the operator owns and rewrites: a ConfigMap marked config.kubernetes.io/local-config with the promoted version, round, URIs and metrics (a Kustomize replacements source, or a Helm values file). A file there that is not this run's is never overwritten.",
      ),
    markerFiles: z
      .array(gitFilePath)
      .max(16)
      .optional()
      .describe(
        'YAML files updated in place, as Flux image automation does: the value on each line ending in a marker # {"$ticclip": "<namespace>:<run>:<field>"} (field: uri, version, round, imageEncoderUri, ...) is replaced.',
      ),
    secretRef: z
      .object({ name: dnsSubdomain.describe("Name of a Secret in the run's namespace.") })
      .optional()
      .describe(
        "Secret with username and password (basic auth; a token goes in password), or bearerToken; optionally ca.crt, a PEM CA bundle trusted for the server. The keys of Flux's GitRepository Secret.",
      ),
    author: z
      .object({
        name: z.string().min(1).max(128).default("continual-clip-operator").describe("Commit author's name."),
        email: z
          .string()
          .min(3)
          .max(254)
          .regex(EMAIL, "an email address")
          .default("continual-clip-operator@ticclip.dev")
          .describe("Commit author's email."),
      })
      .prefault({})
      .describe("Author and committer of the operator's commits."),
    commitMessage: z
      .string()
      .min(1)
      .max(4096)
      .regex(new RegExp(TEMPLATE_PATTERN), `a template whose {{variables}} are ${COMMIT_MESSAGE_VARIABLES.join(", ")}`)
      .default(DEFAULT_COMMIT_MESSAGE)
      .describe(
        `Commit message template. Variables: ${COMMIT_MESSAGE_VARIABLES.map((v) => `{{${v}}}`).join(", ")} ({{action}} is promote or roll back; {{gates}} and {{metrics}} have a line per gate or metric).`,
      ),
  }),
  {
    rule: "has(self.path) || (has(self.markerFiles) && size(self.markerFiles) > 0)",
    message: "set path (a file the operator owns), markerFiles (files with markers), or both",
  },
  {
    rule: "!has(self.path) || !has(self.markerFiles) || !(self.path in self.markerFiles)",
    message: "path is the file the operator owns: it cannot also be a marker file",
    fieldPath: ".markerFiles",
  },
  {
    rule: "!has(self.markerFiles) || self.markerFiles.all(a, self.markerFiles.exists_one(b, b == a))",
    message: "markerFiles must be unique",
    fieldPath: ".markerFiles",
  },
).describe(
  "Write each alias move (promotion, pinVersion rollback, unpin) to a Git repository as one commit, for Argo CD or Flux to roll out. Idempotent: no commit when the files already say it.",
);
export type GitTargetSpec = z.infer<typeof gitTargetSpec>;
