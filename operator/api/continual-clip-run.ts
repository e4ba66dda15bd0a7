// The ContinualClipRun API (ticclip.dev/v1alpha1): the only place its shape is written.
// crds/ is generated from these schemas by gen-artifacts.ts; descriptions feed `kubectl explain`.
import { z } from "zod";
import { affinity } from "./affinity.ts";
import { type CelRule, withRules } from "./cel.ts";
import {
  boundedDuration,
  bucketName,
  dnsLabel,
  dnsSubdomain,
  duration,
  httpUrl,
  imageReference,
  keyPrefix,
  labelMap,
  labelValue,
  isQualifiedName,
  qualifiedNameMap,
  quantity,
  s3Uri,
} from "./common.ts";
import { celNamesMetricAtK, GATE_METRIC_FORMAT, GATE_METRIC_PATTERN } from "./gate-metrics.ts";
import { gitTargetSpec } from "./git-target.ts";
import { celList, nameList, REPLAY_STRATEGIES, strategiesWhere } from "./replay-strategies.ts";
import { s3ConnectionFields } from "./s3-connection.ts";
import { SLICE_ID_PATTERN } from "./slice-manifest.ts";
import { skippedSamples } from "./skipped-samples.ts";

export const GROUP = "ticclip.dev";
export const VERSION = "v1alpha1";
export const KIND = "ContinualClipRun";
export const PLURAL = "continualclipruns";
export const SINGULAR = "continualcliprun";
export const SHORT_NAMES = ["ccr"];
export const CATEGORIES = ["ticclip", "ml"];
export const API_VERSION = `${GROUP}/${VERSION}`;

export { REPLAY_STRATEGIES, type ReplayStrategy } from "./replay-strategies.ts";

export const PRECISIONS = ["amp_bf16", "amp", "fp32"] as const;
export const LR_SCHEDULES = ["Cosine", "ConstantThenAnneal"] as const;
export const OPTIMIZER_STATES = ["Reset", "Carry"] as const;
export const MERGE_MODES = ["None", "Interpolate", "EMA"] as const;
export type MergeMode = (typeof MERGE_MODES)[number];

export const s3Location = z.object({
  bucket: bucketName.describe("S3 bucket."),
  prefix: keyPrefix.default("").describe("Key prefix inside the bucket, ending in '/'."),
});

export const sourceSpec = z
  .object({
    s3: s3Location.extend(s3ConnectionFields).describe("Where data slices land: <prefix><sliceId>/."),
    pollInterval: boundedDuration("1s", "24h")
      .default("5m")
      .describe("How often to list the prefix for new slices (1s to 24h; S3 notifications make changes faster)."),
    startAfter: z
      .string()
      .regex(SLICE_ID_PATTERN, "a slice id: 1-128 of [A-Za-z0-9._-], starting with a letter or digit")
      .optional()
      .describe("Ignore slices whose id sorts at or before this one (a slice id, e.g. 2016)."),
  })
  .describe("The S3 prefix watched for new time slices.");

export const modelSpec = z
  .object({
    architecture: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "an open_clip model name")
      .describe("open_clip model name, or a model config shipped in the trainer image."),
    initialCheckpoint: s3Uri
      .optional()
      .describe("Checkpoint for round 0 (weights only). Omit to train round 0 from scratch."),
  })
  .describe("The model being kept fresh.");

export const optimizerSpec = z
  .object({
    lr: z.number().gt(0).max(1).default(5.0e-4).describe("Peak learning rate of each round's cosine cycle."),
    weightDecay: z.number().min(0).max(10).default(0.2).describe("AdamW weight decay."),
    warmupSteps: z
      .int()
      .min(0)
      .max(10_000_000)
      .default(0)
      .describe(
        "Linear warmup steps of rounds trained from scratch: round 0 without model.initialCheckpoint, and every Restart or Oracle round.",
      ),
    warmStartWarmupSteps: z
      .int()
      .min(0)
      .max(10_000_000)
      .default(0)
      .describe(
        "Linear warmup steps of warm-started rounds (as in TiC-CLIP: none by default, the weights are already trained).",
      ),
    batchSize: z
      .int()
      .min(1)
      .max(1_048_576)
      .default(8192)
      .describe(
        "Global batch size: samples per optimizer step over all GPUs of all nodes. Each rank trains batchSize / (nodes x gpusPerNode), so it must divide evenly.",
      ),
    precision: z.enum(PRECISIONS).default("amp_bf16").describe("Training precision (fp32 is used on CPU)."),
    schedule: z
      .enum(LR_SCHEDULES)
      .default("ConstantThenAnneal")
      .describe(
        "Learning-rate schedule of warm-started rounds: ConstantThenAnneal (lr held, then a linear anneal to 0 over the last annealFraction of the round's steps; Ibrahim et al. 2024; the default, from docs/tic-clip.md's ablation) or Cosine (one cosine cycle from lr to 0, as TiC-CLIP). Rounds trained from scratch always use one cosine cycle.",
      ),
    annealFraction: z
      .number()
      .gt(0)
      .max(1)
      .default(0.2)
      .describe("ConstantThenAnneal: the share of a round's steps that anneal the lr to 0."),
    optimizerState: z
      .enum(OPTIMIZER_STATES)
      .default("Reset")
      .describe(
        "Reset: every round starts a fresh AdamW (TiC-CLIP). Carry: a warm-started round loads the AdamW moments its init checkpoint's round saved beside it (optimizer.pt).",
      ),
  })
  .describe(
    "Optimizer settings; by default every round starts a fresh optimizer, rounds from scratch run one cosine cycle and warm-started rounds a constant lr with a final anneal.",
  );

const WARM_STARTED = strategiesWhere((t) => t.warmStart);

export const mergeSpec = z
  .object({
    mode: z
      .enum(MERGE_MODES)
      .default("None")
      .describe(
        "Weight-space merging after each warm-started round (docs/tic-clip.md). Interpolate: the round's model is (1 - coefficient) x the model it started from + coefficient x the trained weights (WiSE-FT-style patching), and the next round starts from that merge. EMA: the same against the previous round's merged model, while training goes on from the unmerged weights (an exponential moving average over rounds).",
      ),
    coefficient: z
      .number()
      .gt(0)
      .max(1)
      .default(0.5)
      .describe("Weight of the newly trained weights in the merge (1 = no merge)."),
  })
  .describe("The model that is evaluated, gated and promoted is the merge; eval.json also scores the unmerged one.");

const BUFFERED = strategiesWhere((t) => t.data === "buffer");
const FROM_SCRATCH = strategiesWhere((t) => !t.warmStart);

export const strategySpec = withRules(
  z.object({
    replay: z.enum(REPLAY_STRATEGIES).default("CumulativeAll").describe("TiC-CLIP replay strategy."),
    samplesPerRound: z
      .int()
      .min(1)
      .max(1e15)
      .describe("Compute budget C: samples seen per round (Oracle sees (t+1)*C at round t)."),
    bufferSamples: z
      .int()
      .min(0)
      .max(1e15)
      .default(0)
      .describe(`${BUFFERED.join("/")}: size of the past-data buffer; 0 means the size of the new data.`),
    roundPolicy: z
      .enum(["EverySlice", "Latest"])
      .default("EverySlice")
      .describe("EverySlice: one round per slice, in order. Latest: one round over all slices that arrived meanwhile."),
    warmStartFrom: z
      .enum(["PreviousRound", "LastPromoted"])
      .default("PreviousRound")
      .describe(
        `Which checkpoint a round warm-starts from (${nameList(FROM_SCRATCH, "and")} always start from scratch).`,
      ),
    maxAttemptsPerSlice: z
      .int()
      .min(1)
      .max(100)
      .default(3)
      .describe(
        "Rounds of one slice that may fail over it before the slice is marked failed in status (with the reason) and no longer retried. Under roundPolicy Latest a failed round of several slices counts against none; its slices are then retried one at a time.",
      ),
    optimizer: optimizerSpec.prefault({}),
    merge: mergeSpec.prefault({}),
  }),
  {
    rule: `self.bufferSamples == 0 || self.replay in ${celList(BUFFERED)}`,
    message: `bufferSamples applies only to replay ${nameList(BUFFERED, "or")}`,
    fieldPath: ".bufferSamples",
  },
  {
    rule: `!(self.replay in ${celList(FROM_SCRATCH)}) || self.warmStartFrom == 'PreviousRound'`,
    message: `replay ${nameList(FROM_SCRATCH, "and")} start from scratch: warmStartFrom must be PreviousRound`,
    fieldPath: ".warmStartFrom",
  },
  {
    rule: `self.merge.mode == 'None' || self.replay in ${celList(WARM_STARTED)}`,
    message: `merge applies only to warm-started replay (${nameList(WARM_STARTED, "or")})`,
    fieldPath: ".merge.mode",
  },
).describe("How each round is trained.");

// A core/v1 Toleration with the API server's own rules (ValidateTolerations).
const toleration = withRules(
  z.object({
    key: z.string().max(317).optional().describe("Taint key; empty with operator Exists matches every taint."),
    operator: z.enum(["Exists", "Equal"]).optional(),
    value: labelValue.optional(),
    effect: z.enum(["NoSchedule", "PreferNoSchedule", "NoExecute"]).optional(),
    tolerationSeconds: z.int().min(-9_223_372_036).max(9_223_372_036).optional(),
  }),
  {
    rule: `!has(self.key) || self.key == '' || (${isQualifiedName("self.key")})`,
    message: "key must be a qualified name: [DNS-subdomain prefix/]name, name at most 63 of [A-Za-z0-9-_.]",
    fieldPath: ".key",
  },
  {
    rule: "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
    message: "operator must be Exists when key is empty",
    fieldPath: ".operator",
  },
  {
    rule: "!(has(self.operator) && self.operator == 'Exists') || !has(self.value) || self.value == ''",
    message: "value must be empty when operator is Exists",
    fieldPath: ".value",
  },
  {
    rule: "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
    message: "tolerationSeconds needs effect NoExecute",
    fieldPath: ".effect",
  },
);

const resourceList = qualifiedNameMap(quantity, "resource name", 16);

/**
 * requests and limits of a container. A request above the limit of the same resource is refused
 * here, comparing the quantities as numbers (1Gi is less than 1500Mi), instead of by the API
 * server when the Job is created.
 */
const resourceRequirements = (description: string) =>
  withRules(z.object({ requests: resourceList.optional(), limits: resourceList.optional() }), {
    rule: "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || !quantity(string(self.requests[k])).isGreaterThan(quantity(string(self.limits[k]))))",
    message: "a request must not exceed the limit of the same resource (quantities compare as numbers: 1Gi < 1500Mi)",
    fieldPath: ".requests",
  }).describe(description);

// Grace period for a SIGTERMed trainer pod (preemption, drain): it saves the intra-round checkpoint
// before exiting. ViT-B/16 has ~150M parameters: fp32 weights (0.6 GB) plus AdamW's two moments
// (1.2 GB) make ~1.8 GB. Writing it locally takes seconds; uploading it to S3 takes ~20 s at
// 100 MB/s and ~75 s at 25 MB/s (a busy or remote endpoint), plus finishing the current step and
// torchrun's teardown. 300 s still covers an upload at 7 MB/s; Kubernetes' default of 30 s does not
// cover even the fast case.
export const DEFAULT_TERMINATION_GRACE_SECONDS = 300;

export const trainerSpec = withRules(
  z.object({
    image: imageReference.describe("Trainer container image: [registry[:port]/]name[:tag][@sha256:digest]."),
    imagePullPolicy: z.enum(["Always", "IfNotPresent", "Never"]).optional(),
    imagePullSecrets: z
      .array(z.object({ name: dnsSubdomain }))
      .max(8)
      .optional(),
    nodes: z
      .int()
      .min(1)
      .max(1024)
      .default(1)
      .describe("Nodes per round (more than 1 runs an Indexed Job with torchrun rendezvous)."),
    gpusPerNode: z.int().min(0).max(64).default(1).describe("nvidia.com/gpu per node; 0 trains on CPU."),
    resources: resourceRequirements("CPU and memory of each trainer pod (GPUs come from gpusPerNode).").optional(),
    nodeSelector: labelMap.optional(),
    tolerations: z.array(toleration).max(32).optional(),
    affinity: affinity.optional(),
    priorityClassName: dnsSubdomain.optional().describe("PriorityClass of the trainer pods."),
    serviceAccountName: dnsSubdomain.optional().describe("ServiceAccount the trainer pods run as."),
    queueName: dnsSubdomain
      .max(63)
      .optional()
      .describe(
        "Kueue LocalQueue: sets the kueue.x-k8s.io/queue-name label on each Job (a label value: at most 63 characters).",
      ),
    backoffLimit: z
      .int()
      .min(0)
      .max(100)
      .default(2)
      .describe("Retries of a failed trainer pod (exit code 2 is never retried)."),
    activeDeadlineSeconds: z.int().min(60).max(31_536_000).default(172_800),
    checkpointIntervalMinutes: z
      .int()
      .min(1)
      .max(1440)
      .default(30)
      .describe("Intra-round checkpoint interval, so preempted pods resume."),
    maxSkippedFraction: z
      .number()
      .min(0)
      .max(1)
      .default(0.01)
      .describe(
        "Bad samples a round may skip (undecodable or truncated image, decompression bomb, no caption, caption not UTF-8), as a fraction of its samples; more fails the round, naming a shard and the reason. Skips are counted in train_summary.json.",
      ),
    terminationGracePeriodSeconds: z
      .int()
      .min(30)
      .max(3600)
      .default(DEFAULT_TERMINATION_GRACE_SECONDS)
      .describe(
        "Seconds a stopped trainer pod (preemption, drain) gets to save its checkpoint with optimizer state to S3. The default of 300 fits ViT-B/16 (~1.8 GB of weights and AdamW state) uploaded at 7 MB/s or faster.",
      ),
    stallTimeout: boundedDuration("1m", "168h")
      .default("30m")
      .describe(
        "A training round whose samples done (progress.json) and trainer phase have not changed for this long, on the operator's clock, is stalled: a TrainerStalled condition and Warning Event (1m to 168h).",
      ),
    restartOnStall: z
      .boolean()
      .default(false)
      .describe(
        "Evict the pods of a stalled round's trainer Job (TrainerStalled), so their replacements resume from the intra-round checkpoint; an eviction does not count against backoffLimit.",
      ),
  }),
  {
    rule: "!has(self.resources) || ((!has(self.resources.requests) || !('nvidia.com/gpu' in self.resources.requests)) && (!has(self.resources.limits) || !('nvidia.com/gpu' in self.resources.limits)))",
    message: "GPUs come from gpusPerNode: leave nvidia.com/gpu out of resources",
    fieldPath: ".resources",
  },
).describe("The trainer Job of each round.");

export const gateSpec = withRules(
  z.object({
    metric: z
      .string()
      .max(128)
      .regex(GATE_METRIC_PATTERN, GATE_METRIC_FORMAT)
      .describe("Metric path, e.g. retrieval.id.meanRecallAt1 or zeroShot.imagenet-val.top1."),
    op: z.enum([">=", ">", "<=", "<"]).optional().describe("Comparison with value."),
    value: z
      .number()
      .min(0)
      .max(1)
      .optional()
      .describe("Absolute threshold in [0, 1]: every gate metric is a recall or an accuracy."),
    maxRegression: z
      .number()
      .min(0)
      .max(1)
      .optional()
      .describe("Largest allowed drop below the promoted model, in [0, 1]."),
  }),
  { rule: "has(self.value) || has(self.maxRegression)", message: "a gate needs value (with op) or maxRegression" },
  { rule: "has(self.op) == has(self.value)", message: "op and value go together", fieldPath: ".op" },
);

export const evaluationRunnerSpec = withRules(
  z.object({
    mode: z
      .enum(["Job", "InProcess"])
      .default("Job")
      .describe(
        "Job: a Job of the operator image runs `evaluate` with the resources below. InProcess: the operator scores small packs itself.",
      ),
    executionProvider: z
      .enum(["cpu", "cuda"])
      .default("cpu")
      .describe("onnxruntime execution provider; cuda needs gpus > 0 and an image with the CUDA provider."),
    gpus: z.int().min(0).max(8).default(0).describe("nvidia.com/gpu of the evaluation Job."),
    resources: resourceRequirements("CPU and memory of the evaluation Job (GPUs come from gpus).").optional(),
    nodeSelector: labelMap.optional(),
    tolerations: z.array(toleration).max(32).optional(),
    batchSize: z.int().min(1).max(4096).default(64).describe("Images or texts per inference call."),
  }),
  // has() guards: the API server also checks these rules against the field's default ({}).
  {
    rule: "!has(self.executionProvider) || self.executionProvider != 'cuda' || (has(self.gpus) && self.gpus > 0)",
    message: "executionProvider cuda needs gpus > 0",
    fieldPath: ".gpus",
  },
  {
    rule: "!has(self.mode) || self.mode == 'Job' || !has(self.gpus) || self.gpus == 0",
    message: "InProcess evaluation runs in the operator pod: gpus must be 0",
    fieldPath: ".gpus",
  },
).describe("Where and how the evaluate step runs.");

const retrievalSpec = withRules(
  z.object({
    k: z
      .array(z.int().min(1).max(1000))
      .min(1)
      .max(8)
      .default([1, 5, 10])
      .describe("Recall@K values (K=1 is always computed)."),
  }),
  {
    rule: "!has(self.k) || self.k.all(a, self.k.exists_one(b, b == a))",
    message: "k values must be unique",
    fieldPath: ".k",
  },
);

// Gates may name only metrics the run computes, checked at admission: a gate on a metric the
// evaluator never computes could never pass, and every round would be rejected.
export const evaluationSpec = withRules(
  z.object({
    retrieval: retrievalSpec.prefault({}),
    zeroShot: z
      .array(
        z.object({
          name: dnsLabel.describe("Name used in metric paths (zeroShot.<name>.top1); unique."),
          uri: s3Uri.describe("Zero-shot eval pack prefix."),
        }),
      )
      .max(16)
      .default([]),
    gates: z.array(gateSpec).max(32).default([]),
    runner: evaluationRunnerSpec.prefault({}),
  }),
  // has() guards: the API server also checks these rules against the field's default ({}).
  {
    rule: "!has(self.gates) || self.gates.all(g, !g.metric.startsWith('zeroShot.') || (has(self.zeroShot) && self.zeroShot.exists(z, g.metric.startsWith('zeroShot.' + z.name + '.'))))",
    message: "a zeroShot gate must name an entry of evaluation.zeroShot",
    fieldPath: ".gates",
  },
  {
    // The evaluator computes Recall@1 always and Recall@K for each K of retrieval.k.
    // K is parsed from the metric path (digits after the last "At", as the metric pattern ensures);
    // building 'RecallAt' + string(k) instead has an unbounded estimated cost.
    rule: `!has(self.gates) || self.gates.all(g, !${celNamesMetricAtK("g.metric")} || int(g.metric.substring(g.metric.lastIndexOf('At') + 2)) == 1 || (has(self.retrieval) && has(self.retrieval.k) && int(g.metric.substring(g.metric.lastIndexOf('At') + 2)) in self.retrieval.k))`,
    message: "a Recall@K gate needs its K in evaluation.retrieval.k (K=1 is always computed)",
    fieldPath: ".gates",
  },
  {
    rule: "!has(self.zeroShot) || self.zeroShot.all(a, self.zeroShot.exists_one(b, b.name == a.name))",
    message: "zeroShot names must be unique: they name the metric paths",
    fieldPath: ".zeroShot",
  },
).describe("How each round's exported model is scored.");

export const promotionSpec = z
  .object({
    mode: z.enum(["Auto", "Manual"]).default("Auto").describe("Manual waits for the approval annotation."),
    s3: s3Location.describe("Where promoted versions are copied (v<N>/) and the alias pointer lives."),
    alias: dnsLabel.default("production").describe("Alias pointer name: <prefix><alias>.json."),
    configMapName: dnsSubdomain.optional().describe("ConfigMap (owned by the run) describing the promoted model."),
    pinVersion: z.int().min(1).nullable().optional().describe("Rollback: point the alias at this earlier version."),
    git: gitTargetSpec.optional(),
  })
  .describe("What happens to a model that passes its gates.");

// World size: trainer processes of a round (torchrun starts one per GPU; a CPU run has one).
const WORLD = "(self.trainer.gpusPerNode > 0 ? self.trainer.nodes * self.trainer.gpusPerNode : self.trainer.nodes)";
// `inside(a, b)`: location a lies at or under location b (same bucket, b's prefix starts a's).
const inside = (a: string, b: string) =>
  `(self.${a}.s3.bucket == self.${b}.s3.bucket && self.${a}.s3.prefix.startsWith(self.${b}.s3.prefix))`;

export const continualClipRunSpec = withRules(
  z.object({
    suspend: z.boolean().default(false).describe("Stop starting new rounds; a running round completes."),
    source: sourceSpec,
    model: modelSpec,
    strategy: strategySpec,
    trainer: trainerSpec,
    evaluation: evaluationSpec.prefault({}),
    promotion: promotionSpec.optional(),
    artifacts: z
      .object({ s3: s3Location })
      .describe(
        "Where rounds write plans, checkpoints, ONNX encoders and eval results (same endpoint and credentials as source).",
      ),
    historyLimit: z
      .int()
      .min(1)
      .max(1000)
      .default(50)
      .describe(
        "Rounds kept in status.rounds: the newest in full detail, older ones compact (index, phase, sliceCount).",
      ),
  }),
  {
    rule: `self.strategy.samplesPerRound >= ${WORLD}`,
    message: "samplesPerRound must be at least the world size (nodes x gpusPerNode): every rank needs a sample",
    fieldPath: ".strategy.samplesPerRound",
  },
  {
    rule: `self.trainer.gpusPerNode == 0 || self.strategy.optimizer.batchSize % ${WORLD} == 0`,
    message: "batchSize is the global batch: it must divide evenly over nodes x gpusPerNode",
    fieldPath: ".strategy.optimizer.batchSize",
  },
  {
    rule: `!${inside("artifacts", "source")}`,
    message:
      "artifacts lie inside the source prefix: rounds written there would be listed as data slices; use another bucket or a prefix outside source.s3.prefix",
    fieldPath: ".artifacts.s3.prefix",
  },
  {
    rule: `!has(self.promotion) || !${inside("promotion", "source")}`,
    message:
      "promotion lies inside the source prefix: promoted versions would be listed as data slices; use another bucket or a prefix outside source.s3.prefix",
    fieldPath: ".promotion.s3.prefix",
  },
  {
    rule: `!has(self.promotion) || !(${inside("promotion", "artifacts")} || ${inside("artifacts", "promotion")})`,
    message:
      "promotion and artifacts overlap (one prefix contains the other in the same bucket): promoted versions and round artifacts would mix; give them separate prefixes",
    fieldPath: ".promotion.s3.prefix",
  },
  {
    // A dot in a bucket name splits the virtual host name, and TLS certificates (*.s3.amazonaws.com)
    // match one label only: requests to such a bucket fail. Every bucket of a run uses the source's connection.
    rule: "!has(self.source.s3.addressingStyle) || self.source.s3.addressingStyle != 'VirtualHost' || !(self.source.s3.bucket.contains('.') || self.artifacts.s3.bucket.contains('.') || (has(self.promotion) && self.promotion.s3.bucket.contains('.')))",
    message:
      "VirtualHost addressing needs bucket names without dots (source, artifacts and promotion buckets share the connection): use Path",
    fieldPath: ".source.s3.addressingStyle",
  },
).describe("Desired state of a continual CLIP training run.");

// Rules on the object itself (CRD root): names derived from the run's name must be valid names of
// the children that carry them. Jobs and Services get `<run>-rNNNN-<kind>`, shortened with a hash
// to 63 characters (operator/kube/objects.ts); a '.' would make invalid pod hostnames.
export const MAX_MULTI_NODE_RUN_NAME = 63 - "-r0000-train".length - "-1023".length;
export const RUN_NAME_RULES: CelRule[] = [
  {
    rule: "self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",
    message:
      "must consist of lowercase letters, digits and '-' (no '.'): it prefixes the names of the run's Jobs, Services and pods",
    fieldPath: ".metadata.name",
  },
  {
    rule: "self.spec.trainer.nodes == 1 || self.metadata.name.matches('^[a-z]')",
    message:
      "a multi-node run's name must start with a letter: it prefixes its rendezvous Service's name, a DNS-1035 label",
    fieldPath: ".metadata.name",
  },
  {
    // The Job controller names each indexed pod's host `<job>-<index>` without shortening it, and a
    // hostname is a DNS label (<= 63): <run> + "-rNNNN-train" + "-" + an index below 1024 must fit.
    rule: `self.spec.trainer.nodes == 1 || self.metadata.name.size() <= ${MAX_MULTI_NODE_RUN_NAME}`,
    message: `a multi-node run's name must be at most ${MAX_MULTI_NODE_RUN_NAME} characters: its pods' hostnames <run>-rNNNN-train-<index> must fit 63`,
    fieldPath: ".metadata.name",
  },
];

// ---- status ----

export const conditionSchema = z.object({
  type: z.string().min(1).max(316),
  status: z.enum(["True", "False", "Unknown"]),
  observedGeneration: z.int().min(0).optional(),
  lastTransitionTime: z.string().describe("RFC 3339 time of the last status change."),
  reason: z
    .string()
    .min(1)
    .max(1024)
    .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/),
  message: z.string().max(32768),
});
export type Condition = z.infer<typeof conditionSchema>;

// Trained: training done, not (yet) evaluated. Passed: gates passed but not promoted (no
// promotion configured, or a later round was promoted first).
export const ROUND_PHASES = [
  "Pending",
  "Training",
  "Trained",
  "Evaluating",
  "Gating",
  "Promoted",
  "Passed",
  "Rejected",
  "Failed",
] as const;
export type RoundPhase = (typeof ROUND_PHASES)[number];

// Bounds of status lists and texts (operator/controller/status-bounds.ts keeps to them; the API server
// checks them too): the status of a run at historyLimit 1000 stays well under 256 KiB (docs/scale.md).
export const STATUS_LIMITS = {
  /** Slice ids listed per round. */
  roundSlices: 10,
  /** Entries of status.slices.invalid and status.slices.failed. */
  sliceList: 10,
  /** Characters of a round's message and of a condition's message. */
  message: 1024,
  /** Characters of a round's reason (a CamelCase word when the operator writes it). */
  reason: 48,
  /** Characters of the reason of an invalid or failed slice. */
  listReason: 256,
  /** Characters of a gate result's message. */
  gateMessage: 256,
  /** Gate results of a round (spec.evaluation.gates has at most 32). */
  gates: 32,
  /**
   * Metrics of a round: 4 relations, 16 zero-shot sets x top1/top5, 32 gated and 3 TiC summary
   * metrics make at most 71.
   */
  metrics: 80,
  /** Characters of a metric path (the longest the gate pattern allows is 77), a URI and a timestamp. */
  metricName: 96,
  uri: 2048,
  time: 64,
  /** Serialized bytes of the rounds kept in full detail (the newest one always is). */
  detailBytes: 16 * 1024,
} as const;

const statusMetrics = z
  .record(z.string().max(STATUS_LIMITS.metricName), z.number())
  .refine((m) => Object.keys(m).length <= STATUS_LIMITS.metrics, `at most ${STATUS_LIMITS.metrics} metrics`)
  .meta({ maxProperties: STATUS_LIMITS.metrics });

const gateResult = z.object({
  metric: z.string().max(STATUS_LIMITS.metricName),
  observed: z.number().nullable().optional(),
  threshold: z.number().nullable().optional(),
  passed: z.boolean(),
  message: z.string().max(STATUS_LIMITS.gateMessage).optional(),
});

export const roundStatus = z
  .object({
    index: z.int().min(0),
    slices: z
      .array(z.string().max(128))
      .max(STATUS_LIMITS.roundSlices)
      .optional()
      .describe(
        `The round's newest new slices, in slice order: at most ${STATUS_LIMITS.roundSlices} (sliceCount has the number, firstSlice the oldest; the full list is newSlices of the round's plan.json). Absent in compact entries.`,
      ),
    sliceCount: z.int().min(0).optional().describe("How many new slices the round trained on."),
    firstSlice: z
      .string()
      .max(128)
      .optional()
      .describe("The round's oldest new slice, when slices does not list them all."),
    replay: z.enum(REPLAY_STRATEGIES).optional().describe("Replay strategy of the round. Absent in compact entries."),
    phase: z.enum(ROUND_PHASES),
    reason: z.string().max(STATUS_LIMITS.reason).optional(),
    message: z
      .string()
      .max(STATUS_LIMITS.message)
      .optional()
      .describe(`Why the round is in its phase; cut to ${STATUS_LIMITS.message} characters (ending in "...").`),
    job: z.string().max(63).optional(),
    initCheckpoint: z.string().max(STATUS_LIMITS.uri).optional(),
    checkpoint: z.string().max(STATUS_LIMITS.uri).optional(),
    samples: z.int().min(0).optional(),
    gpuSeconds: z.number().min(0).optional(),
    skippedSamples: skippedSamples
      .optional()
      .describe(
        "Samples the trainer skipped as bad data (undecodable image, no caption...), by reason, and the most spec.trainer.maxSkippedFraction allowed (from train_summary.json).",
      ),
    startedAt: z.string().max(STATUS_LIMITS.time).optional(),
    finishedAt: z.string().max(STATUS_LIMITS.time).optional(),
    metrics: statusMetrics.optional(),
    gates: z.array(gateResult).max(STATUS_LIMITS.gates).optional(),
    promotedVersion: z.int().optional(),
  })
  .describe(
    `One round. The newest rounds (as many as fit ${STATUS_LIMITS.detailBytes / 1024} KiB) have every field; ` +
      "older ones are compact: index, phase, sliceCount, and promotedVersion or else reason. " +
      "rounds/<NNNN>/ in S3 has everything.",
  );
export type RoundStatus = z.infer<typeof roundStatus>;

export const RUN_PHASES = [
  "Pending",
  "Waiting",
  "Training",
  "Evaluating",
  "Idle",
  "Suspended",
  "Invalid",
  "Degraded",
] as const;

/** The trainer's phases while a round runs, in order (trainer-image/src/ticclip_trainer/progress.py). */
export const TRAINER_PHASES = ["loading", "training", "checkpointing", "exporting"] as const;

/** status.currentRound.progress: the trainer's progress.json as the operator last read it. */
export const roundProgress = z
  .object({
    phase: z
      .enum([...TRAINER_PHASES, "done"])
      .optional()
      .describe("The trainer's phase; done once the round is trained."),
    percent: z
      .string()
      .regex(/^[0-9]{1,3}%$/)
      .optional()
      .describe("Samples done of the round's budget, e.g. 42%."),
    samplesDone: z.int().min(0).optional(),
    samplesTotal: z.int().min(1).optional(),
    samplesPerSecond: z.number().min(0).optional().describe("Over the trainer's last few minutes of steps."),
    eta: duration.optional().describe("Time left at the recent rate, from the trainer's last report (e.g. 1h20m)."),
    loss: z.number().optional().describe("Smoothed training loss."),
    updatedAt: z.string().max(STATUS_LIMITS.time).optional().describe("When the trainer wrote the report (its clock)."),
    advancedAt: z
      .string()
      .max(STATUS_LIMITS.time)
      .describe(
        "When the operator last saw samples done or the phase change (its clock): stalls are measured from here.",
      ),
    problem: z.string().max(STATUS_LIMITS.message).optional().describe("Why the last progress.json could not be used."),
  })
  .describe("Progress of the round's trainer (progress.json), read at most once per progress interval.");

export const continualClipRunStatus = z.object({
  observedGeneration: z.int().min(0).optional(),
  phase: z.enum(RUN_PHASES).optional(),
  conditions: z.array(conditionSchema).optional(),
  slices: z
    .object({
      discovered: z.int().min(0),
      consumed: z.int().min(0),
      latest: z.string().optional(),
      invalid: z
        .array(z.object({ id: z.string().max(1024), reason: z.string().max(STATUS_LIMITS.listReason) }))
        .max(STATUS_LIMITS.sliceList)
        .optional()
        .describe(`The newest invalid slices (at most ${STATUS_LIMITS.sliceList}), with why.`),
      invalidCount: z.int().min(0).optional().describe("How many slices are invalid (invalid lists the newest)."),
      failed: z
        .array(
          z.object({
            id: z.string().max(128),
            reason: z.string().max(STATUS_LIMITS.listReason),
            attempts: z.int().min(1),
          }),
        )
        .max(STATUS_LIMITS.sliceList)
        .optional()
        .describe(
          `Slices no longer retried: every round over them failed, spec.strategy.maxAttemptsPerSlice times (the newest ${STATUS_LIMITS.sliceList}).`,
        ),
      failedCount: z
        .int()
        .min(0)
        .optional()
        .describe("How many slices are no longer retried (failed lists the newest)."),
    })
    .optional(),
  currentRound: z
    .object({
      index: z.int().min(0),
      phase: z.enum(ROUND_PHASES),
      job: z.string().optional(),
      startedAt: z.string().optional(),
      progress: roundProgress.optional(),
    })
    .optional(),
  rounds: z
    .array(roundStatus)
    .max(1000)
    .optional()
    .describe("The newest spec.historyLimit rounds, oldest first: the newest in full detail, older ones compact."),
  promoted: z
    .object({
      version: z.int().min(1),
      round: z.int().min(0),
      uri: z.string().max(STATUS_LIMITS.uri),
      promotedAt: z.string().max(STATUS_LIMITS.time),
      metrics: statusMetrics.optional(),
    })
    .optional(),
  compute: z
    .object({
      samplesSeen: z.int().min(0),
      gpuSeconds: z.number().min(0),
      oracleEquivalentSamples: z.int().min(0),
      savingVsOracle: z.number().min(0),
    })
    .optional(),
});
export type ContinualClipRunStatus = z.infer<typeof continualClipRunStatus>;

const objectMeta = z
  .object({
    name: z.string().optional(),
    namespace: z.string().optional(),
    uid: z.string().optional(),
    generation: z.int().optional(),
    resourceVersion: z.string().optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    labels: z.record(z.string(), z.string()).optional(),
    deletionTimestamp: z.string().optional(),
  })
  .loose();

/** A ContinualClipRun as read from the API server (spec already defaulted by it). */
export const continualClipRun = withRules(
  z.object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal(KIND),
    metadata: objectMeta,
    spec: continualClipRunSpec,
    status: continualClipRunStatus.optional(),
  }),
  ...RUN_NAME_RULES,
);
export type ContinualClipRun = z.infer<typeof continualClipRun>;
export type ContinualClipRunSpec = z.infer<typeof continualClipRunSpec>;
