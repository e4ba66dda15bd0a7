// `npm run experiment:tic`: the TiC-CLIP comparison on our own stack (docs/tic-clip.md). Six
// strategies (Sequential, CumulativeAll, CumulativeExp, CumulativeEqual, Restart, Oracle) x seeds on
// the same drifting synthetic slices; every trained round is scored on every slice (the T x T
// matrix); prints one table row per strategy and writes the HTML report.
//
// Two drivers (TIC_VIA):
//   trainer (default): the operator's planner writes each round's plan.json exactly as the
//     controller would (same mixture, warm start from the previous round's checkpoint), the real
//     trainer runs it (run_round in two long-lived worker processes: bench/tic_worker.py), and the
//     evaluator's evaluateRound scores it on all packs. Seeds are training seeds (init and data
//     order) on one set of slices.
//   operator: one ContinualClipRun per strategy and seed through the real operator, the local
//     executor and the trainer on the local cluster, then rescoreRun for the full matrix. The
//     operator derives the training seed from the round index, so seeds are data seeds (a set of
//     slices per seed). Each round is a fresh Python process (PyTorch import, ONNX export): on this
//     shared 2-core machine that costs minutes per round, far over the 25-minute budget.
// A calibration ladder first trains from scratch on all T slices at C, 2C, 4C, 8C (the Oracle's
// last-round mixture, from the planner) to show that C undertrains and T*C is near the plateau.
//
// Beyond the paper (trainer driver): weight-space merging (TIC_MERGE, default
// "Interpolate:0.5,EMA:0.5") as variants of CumulativeAll in the same run, with each merged round's
// unmerged weights scored too; TIC_ABLATION=1 instead runs CumulativeAll with one optimizer knob
// changed at a time against the paper's choice (fresh AdamW, no warmup on warm starts, one cosine
// cycle per round, TIC_LR). Seeds run one after the other, and results.json and the table are
// written after each, so a stopped run keeps its finished seeds.
//
// Settings (environment): TIC_VIA, TIC_T (slices, default 4), TIC_SEEDS (default 0,1,2), TIC_C
// (samples per round, 8192), TIC_SLICE_SAMPLES (8192), TIC_EVAL_SAMPLES (200), TIC_BATCH (64), TIC_LR,
// TIC_WORKERS (2), TIC_VARIANTS (only these rows), TIC_CALIBRATE (0 skips the ladder, "only" runs nothing else), TIC_LADDER (budgets
// of the ladder in units of C, default 1,2,T,2T), TIC_MERGE ("" for none), TIC_ABLATION, TIC_PROFILE
// (gpu: the settings for a lent GPU), TIC_OUT (default .local/tic-experiment).
// Needs the local cluster's S3 server (npm run experiment:tic starts it through dev/with-cluster.sh).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { createInterface } from "node:readline";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import {
  optimizerSpec,
  REPLAY_STRATEGIES,
  type ReplayStrategy,
  type RoundStatus,
} from "../operator/api/continual-clip-run.ts";
import { ROUND_FILES, roundUri } from "../operator/api/round-layout.ts";
import { ROUND_PLAN_SCHEMA_VERSION, UNMERGED_DIR, type RoundPlan } from "../operator/api/round-plan.ts";
import { MANIFEST_NAME } from "../operator/api/slice-manifest.ts";
import { computeAccounting } from "../operator/data/compute.ts";
import {
  planRound,
  roundMerge,
  roundSchedule,
  type MergeSetting,
  type OptimizerSetting,
  type PlannerSlice,
} from "../operator/data/planner.ts";
import { evaluateRound } from "../operator/evaluation/evaluate.ts";
import { retrievalPacks } from "../operator/evaluation/request.ts";
import { ticMatrix, type TicMatrix, type TicRow } from "../operator/evaluation/tic.ts";
import { readTrainingCurves } from "../operator/report/curves.ts";
import { reportHtml, type ReportRun } from "../operator/report/html.ts";
import { rescoreRun } from "../operator/report/rescore.ts";
import { differenceLines, formatTable, summarize, type RunResult } from "../operator/report/summary.ts";
import { createS3Client } from "../operator/s3/client.ts";
import { S3ObjectStore } from "../operator/s3/object-store.ts";
import {
  REPO_ROOT,
  applyCrds,
  createNamespace,
  getRun,
  kubectlOk,
  requireEnv,
  waitFor,
} from "../test/support/cluster.ts";
import { createS3Secret, startExecutor, startOperator, TRAINER_IMAGE, venvPython } from "../test/support/local-run.ts";
import { s3Connection } from "../test/support/s3.ts";

// TIC_PROFILE=gpu: the settings for a lent GPU (one worker owns it; CUDA is picked up by the
// trainer itself). Explicit TIC_* settings still win. Not run on this project's CPU-only machines.
const GPU = process.env.TIC_PROFILE === "gpu";
const PROFILE: Record<string, string> = GPU
  ? {
      TIC_T: "7",
      TIC_SEEDS: "0,1,2,3,4",
      TIC_C: "32768",
      TIC_SLICE_SAMPLES: "32768",
      TIC_BATCH: "256",
      TIC_WORKERS: "1",
      TIC_PRECISION: "amp_bf16",
    }
  : {};
const setting = (name: string) => process.env[name] ?? PROFILE[name];
const num = (name: string, dflt: number) => (setting(name) ? Number(setting(name)) : dflt);
const VIA = setting("TIC_VIA") ?? "trainer";
const T = num("TIC_T", 4);
const SEEDS = (setting("TIC_SEEDS") ?? "0,1,2").split(",").filter(Boolean);
const C = num("TIC_C", 8192);
const SLICE_SAMPLES = num("TIC_SLICE_SAMPLES", 8192);
const EVAL_SAMPLES = num("TIC_EVAL_SAMPLES", 200);
const BATCH = num("TIC_BATCH", 64);
const LR = num("TIC_LR", 1e-3);
const WORKERS = num("TIC_WORKERS", 2);
const PRECISION = (setting("TIC_PRECISION") ?? "fp32") as RoundPlan["optimizer"]["precision"];
const ABLATION = process.env.TIC_ABLATION === "1";
const CALIBRATE = (process.env.TIC_CALIBRATE ?? (ABLATION ? "0" : "1")) !== "0";
// The ladder brackets the Oracle's last round (T x C) with the rung above it (2T x C): 1,2,4,8 at T = 4.
const LADDER = (process.env.TIC_LADDER ?? `1,2,${T},${2 * T}`).split(",").map(Number);
const MERGES = (process.env.TIC_MERGE ?? "Interpolate:0.5,EMA:0.5")
  .split(",")
  .filter(Boolean)
  .map((m) => {
    const [mode, c] = m.split(":");
    if (mode !== "Interpolate" && mode !== "EMA") throw new Error(`TIC_MERGE: ${m}: Interpolate:<c> or EMA:<c>`);
    return { mode, coefficient: Number(c ?? "0.5") } as MergeSetting;
  });
const OUT = path.resolve(process.env.TIC_OUT ?? path.join(REPO_ROOT, ".local/tic-experiment"));
const SLICE_IDS = Array.from({ length: T }, (_, i) => String(2016 + i));
const FINAL = new Set(["Passed", "Promoted", "Rejected"]);
const REGION = process.env.AWS_REGION ?? "us-east-1";
const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 60_000).toFixed(1)} min`;
const pts = (x: number) => (100 * x).toFixed(1);

if (!["trainer", "operator"].includes(VIA)) throw new Error(`TIC_VIA=${VIA}: trainer or operator`);
if (!(T >= 2 && C >= 1 && SEEDS.length >= 1)) throw new Error("TIC_T >= 2, TIC_C >= 1 and one seed at least");
if (!MERGES.every((m) => m.coefficient > 0 && m.coefficient <= 1)) throw new Error("TIC_MERGE coefficients: (0, 1]");

/** One table row's training recipe: a replay strategy, maybe merged, maybe with other optimizer knobs. */
type Variant = {
  label: string;
  replay: ReplayStrategy;
  merge?: MergeSetting;
  /** Optimizer knobs of warm-started rounds (the ablation). */
  knobs?: Partial<OptimizerSetting> & { warmStartWarmupFraction?: number; lr?: number };
};

const mergeLabel = (m: MergeSetting) => `CumulativeAll + ${m.mode} ${m.coefficient}`;
// The spec's optimizer defaults (what a run gets): warm-started rounds' schedule and optimizer state.
const SPEC_OPTIMIZER = optimizerSpec.parse({});
// The paper's recipe on warm-started rounds: fresh AdamW, no warmup, one cosine cycle.
const PAPER: Variant["knobs"] = { schedule: "Cosine", optimizerState: "Reset" };
const paper = (knobs: Variant["knobs"] = {}) => ({ ...PAPER, ...knobs });
// Each arm changes one knob of the paper's recipe.
const ABLATION_VARIANTS: Variant[] = [
  { label: "paper: fresh AdamW, no warmup, cosine", replay: "CumulativeAll", knobs: paper() },
  { label: "AdamW state carried", replay: "CumulativeAll", knobs: paper({ optimizerState: "Carry" }) },
  { label: "warmup 10% of steps", replay: "CumulativeAll", knobs: paper({ warmStartWarmupFraction: 0.1 }) },
  {
    label: "constant then anneal (20%)",
    replay: "CumulativeAll",
    knobs: paper({ schedule: "ConstantThenAnneal", annealFraction: 0.2 }),
  },
  { label: `lr ${LR * 2}`, replay: "CumulativeAll", knobs: paper({ lr: LR * 2 }) },
  { label: `lr ${LR / 2}`, replay: "CumulativeAll", knobs: paper({ lr: LR / 2 }) },
];
const PAPER_COSINE = "CumulativeAll (paper's cosine)";
const ALL_VARIANTS: Variant[] = ABLATION
  ? ABLATION_VARIANTS
  : [
      // The Oracle first: the longest chain, so the workers finish together.
      ...["Oracle", ...REPLAY_STRATEGIES.filter((s) => s !== "Oracle")].map((r) => ({
        label: r,
        replay: r as ReplayStrategy,
      })),
      // The operator's defaults against the paper's schedule on the same chain.
      { label: PAPER_COSINE, replay: "CumulativeAll", knobs: paper() },
      ...MERGES.map((m) => ({ label: mergeLabel(m), replay: "CumulativeAll" as const, merge: m })),
    ];
// TIC_VARIANTS: only these rows (labels, comma-separated), e.g. "Oracle,CumulativeAll,CumulativeAll + EMA 0.5".
const ONLY = process.env.TIC_VARIANTS?.split(",").map((l) => l.trim());
const VARIANTS = ALL_VARIANTS.filter((v) => !ONLY || ONLY.includes(v.label));
if (VARIANTS.length === 0)
  throw new Error(`TIC_VARIANTS=${process.env.TIC_VARIANTS}: none of ${ALL_VARIANTS.map((v) => v.label).join(", ")}`);
const unmergedLabel = (label: string) => `${label} (unmerged)`;
const ORDER = VARIANTS.flatMap((v) => (v.merge ? [v.label, unmergedLabel(v.label)] : [v.label]));

const s3 = createS3Client({ ...s3Connection(), region: REGION });
const store = new S3ObjectStore(s3);
// One thread per trainer process: the workers (or pods) already use both cores.
const trainerEnv = { OMP_NUM_THREADS: "1", MKL_NUM_THREADS: "1" };
const pythonEnv = { ...process.env, ...trainerEnv, PYTHONPATH: path.join(REPO_ROOT, "trainer-image/src") };

function synth(prefix: string, seed: string): void {
  const res = spawnSync(
    venvPython(),
    [
      "-m",
      "ticclip_trainer",
      "synth",
      "--out",
      prefix,
      "--slices",
      SLICE_IDS.join(","),
      "--samples",
      String(SLICE_SAMPLES),
      "--eval-samples",
      String(EVAL_SAMPLES),
      "--shard-size",
      "256",
      "--seed",
      seed,
    ],
    {
      encoding: "utf8",
      env: pythonEnv,
    },
  );
  if (res.status !== 0) throw new Error(`synth failed: ${res.stderr}`);
}

async function sliceHistory(prefix: string): Promise<PlannerSlice[]> {
  const out: PlannerSlice[] = [];
  for (const id of SLICE_IDS) {
    const base = `${prefix}${id}/`;
    const m = JSON.parse(new TextDecoder().decode(await store.get(`${base}${MANIFEST_NAME}`)));
    out.push({
      id,
      shards: m.shards.map((s: { key: string; samples: number }) => ({ uri: base + s.key, samples: s.samples })),
    });
  }
  return out;
}

/** Long-lived trainer processes (bench/tic_worker.py), each running one plan at a time. */
class TrainerPool {
  readonly #idle: { child: ChildProcess; answer: (line: string) => void }[] = [];
  readonly #waiting: ((w: { child: ChildProcess; answer: (line: string) => void }) => void)[] = [];
  readonly #children: ChildProcess[] = [];

  async start(n: number): Promise<void> {
    // Each worker imports PyTorch once; they start one after the other (two cold imports at once
    // on a loaded machine take longer than two in a row).
    for (let i = 0; i < n; i++) await this.#startOne();
  }

  #startOne(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const script = path.join(REPO_ROOT, "bench/tic_worker.py");
      const child = spawn(venvPython(), [script], { env: pythonEnv, stdio: ["pipe", "pipe", "pipe"] });
      let err = "";
      child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
      const worker = { child, answer: (_: string) => {} };
      let ready = false;
      // A worker that dies fails the plan it was running (or its start).
      child.once("exit", (code, signal) => {
        const error = `trainer worker exited (${code ?? signal}): ${err}`;
        if (ready) worker.answer(JSON.stringify({ rc: code ?? 1, error, seconds: 0 }));
        else reject(new Error(error));
      });
      createInterface({ input: child.stdout! }).on("line", (line) => {
        if (!ready) {
          ready = true;
          this.#release(worker);
          return resolve();
        }
        worker.answer(line);
      });
      this.#children.push(child);
    });
  }

  #release(w: { child: ChildProcess; answer: (line: string) => void }) {
    const next = this.#waiting.shift();
    if (next) next(w);
    else this.#idle.push(w);
  }

  async run(planUri: string): Promise<number> {
    const w =
      this.#idle.shift() ??
      (await new Promise<{ child: ChildProcess; answer: (line: string) => void }>((r) => this.#waiting.push(r)));
    try {
      const line = await new Promise<string>((resolve) => {
        w.answer = resolve;
        w.child.stdin!.write(planUri + "\n");
      });
      const res = JSON.parse(line) as { rc: number; error: string | null; seconds: number };
      if (res.rc !== 0) throw new Error(`trainer on ${planUri} exited ${res.rc}: ${res.error}`);
      return res.seconds;
    } finally {
      this.#release(w);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.#children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once("exit", () => resolve());
            c.stdin!.end();
          }),
      ),
    );
  }
}

/** The RoundPlan the controller would write for round t of a run (next-round.ts), with our seed. */
function roundPlan(o: {
  name: string;
  replay: ReplayStrategy;
  variant?: Variant;
  slices: PlannerSlice[];
  t: number;
  samples?: number;
  init: string | null;
  out: string;
  seed: number;
}): RoundPlan {
  const newSlice = SLICE_IDS[o.t]!;
  const mixture = planRound({
    replay: o.replay,
    samplesPerRound: C,
    bufferSamples: 0,
    round: o.t,
    slices: o.slices,
    newSliceIds: [newSlice],
  });
  if (!mixture.ok) throw new Error(`${o.name} round ${o.t}: ${mixture.reason}: ${mixture.message}`);
  const warm = mixture.mixture.warmStart && o.init !== null;
  const samples = o.samples ?? mixture.mixture.samples;
  const knobs = warm ? (o.variant?.knobs ?? {}) : {};
  const steps = Math.ceil(samples / BATCH);
  const optimizer = {
    ...roundSchedule(
      {
        schedule: knobs.schedule ?? SPEC_OPTIMIZER.schedule,
        annealFraction: knobs.annealFraction ?? SPEC_OPTIMIZER.annealFraction,
        optimizerState: o.variant?.knobs?.optimizerState ?? SPEC_OPTIMIZER.optimizerState,
      },
      warm,
    ),
  };
  return {
    schemaVersion: ROUND_PLAN_SCHEMA_VERSION,
    run: { namespace: "tic-experiment", name: o.name },
    round: o.t,
    newSlices: [newSlice],
    replay: o.replay,
    model: { architecture: "ticclip-tiny", initCheckpoint: mixture.mixture.warmStart ? o.init : null },
    data: { sources: mixture.mixture.sources, samples },
    optimizer: {
      lr: knobs.lr ?? LR,
      weightDecay: 0.2,
      warmupSteps: Math.round((knobs.warmStartWarmupFraction ?? 0) * steps),
      batchSize: BATCH,
      precision: PRECISION,
      ...optimizer,
    },
    ...(o.variant?.merge ? roundMerge(o.variant.merge, warm) : {}),
    output: { uri: o.out },
    checkpointIntervalMinutes: 30,
    seed: o.seed,
    s3: { region: REGION, endpoint: requireEnv("S3_ENDPOINT") },
  };
}

type Packs = { sliceId: string; packUri: string }[];

type Row = { row: TicRow; items: Record<string, number> };

/** Mean R@1 of the round's model on every pack: one full row of the TiC matrix, with each cell's
 * item count (images and texts, for the bootstrap); of the unmerged weights too when asked. */
async function scoreRow(
  roundUri: string,
  t: number,
  packs: Packs,
  unmerged = false,
): Promise<{ merged: Row; unmerged?: Row; chance: number | undefined }> {
  const res = await evaluateRound(store, {
    round: t,
    roundUri,
    roundSlices: [SLICE_IDS[t]!],
    retrieval: packs,
    zeroShot: [],
    k: [1],
    previousRows: [],
    now: new Date().toISOString(),
    intraOpNumThreads: 1,
    ...(unmerged ? { unmerged: { uri: `${roundUri}${UNMERGED_DIR}` } } : {}),
  });
  if (res.status !== "Succeeded") throw new Error(`${roundUri}: ${res.reason}: ${res.message}`);
  if (unmerged && !res.unmerged) throw new Error(`${roundUri}: the unmerged model was not scored`);
  const rowOf = (scores: typeof res.candidate): Row => ({
    row: {
      round: t,
      roundSlices: [SLICE_IDS[t]!],
      cells: Object.fromEntries(scores.retrieval.map((r) => [r.sliceId, r.metrics.meanRecallAt1!])),
    },
    // meanRecallAt1 averages image->text over `images` and text->image over `texts`: its variance is
    // that of a mean over 4 / (1/images + 1/texts) items.
    items: Object.fromEntries(scores.retrieval.map((r) => [r.sliceId, 4 / (1 / r.images + 1 / r.texts)])),
  });
  const chances = res.candidate.retrieval.map((r) => r.chance?.meanRecallAt1);
  const known = chances.filter((c): c is number => c !== undefined);
  return {
    merged: rowOf(res.candidate),
    ...(res.unmerged ? { unmerged: rowOf(res.unmerged) } : {}),
    chance:
      known.length === chances.length && known.length ? known.reduce((a, b) => a + b, 0) / known.length : undefined,
  };
}

/** Item counts in the matrix's shape (summary.ts bootstrapCi). */
function itemsOf(matrix: TicMatrix, rows: Row[]): (number | null)[][] {
  return matrix.rounds.map((round) => {
    const r = rows.find((x) => x.row.round === round)!;
    return matrix.slices.map((s) => r.items[s] ?? null);
  });
}

type Calibration = { budget: number; meanR1: number; id: number };

async function calibrate(pool: TrainerPool, prefix: string, runsBucket: string, packs: Packs): Promise<Calibration[]> {
  const slices = await sliceHistory(prefix);
  const out: Calibration[] = [];
  await Promise.all(
    [...LADDER]
      .sort((a, b) => b - a)
      .map(async (k) => {
        const budget = k * C;
        const uri = `s3://${runsBucket}/calibration/${budget}/`;
        const plan = roundPlan({
          name: `calibration-${budget}`,
          replay: "Oracle",
          slices,
          t: T - 1,
          samples: budget,
          init: null,
          out: uri,
          seed: 0,
        });
        await store.put(`${uri}${ROUND_FILES.plan}`, JSON.stringify(plan));
        await pool.run(`${uri}${ROUND_FILES.plan}`);
        const { row } = (await scoreRow(uri, T - 1, packs)).merged;
        const values = Object.values(row.cells);
        out.push({
          budget,
          meanR1: values.reduce((a, b) => a + b, 0) / values.length,
          id: row.cells[SLICE_IDS.at(-1)!]!,
        });
        console.log(
          `  calibration: ${budget} samples (${k}C) from scratch on all slices -> ` +
            `mean R@1 ${pts(out.at(-1)!.meanR1)} (${elapsed()})`,
        );
      }),
  );
  return out.sort((a, b) => a.budget - b.budget);
}

type Result = RunResult & ReportRun;

/** What each trained round cost, from its train_summary.json: seconds per optimizer step, the merge. */
type RoundCost = {
  label: string;
  steps: number;
  trainSeconds: number;
  merge?: { seconds: number; extraBytes: number; peakRssBytes: number; baseLoadSeconds: number };
};
const costs: RoundCost[] = [];

async function recordCost(label: string, uri: string): Promise<void> {
  const raw = await store.get(`${uri}${ROUND_FILES.summary}`);
  if (!raw) throw new Error(`${uri}${ROUND_FILES.summary} missing`);
  const sum = JSON.parse(new TextDecoder().decode(raw));
  costs.push({
    label,
    steps: sum.steps,
    trainSeconds: sum.trainTimeSeconds,
    ...(sum.merge ? { merge: sum.merge } : {}),
  });
}

type TrainedRound = {
  uri: string;
  plan: RoundPlan;
  startedAt: string;
  finishedAt: string;
  scored: Awaited<ReturnType<typeof scoreRow>>;
};

async function trainRound(
  pool: TrainerPool,
  label: string,
  plan: RoundPlan,
  t: number,
  packs: Packs,
): Promise<TrainedRound> {
  const uri = plan.output.uri;
  await store.put(`${uri}${ROUND_FILES.plan}`, JSON.stringify(plan));
  const startedAt = new Date().toISOString();
  await pool.run(`${uri}${ROUND_FILES.plan}`);
  const finishedAt = new Date().toISOString();
  await recordCost(label, uri);
  return { uri, plan, startedAt, finishedAt, scored: await scoreRow(uri, t, packs, plan.merge !== undefined) };
}

/**
 * Round 0 of a seed, trained once for every variant: it is the same plan for all of them (C samples
 * of the first slice from scratch, the same seed; no knob or merge applies to a round from scratch).
 * It keeps its AdamW state (optimizer.pt) for the variants that carry it.
 */
const firstRounds = new Map<string, Promise<TrainedRound>>();
function firstRound(pool: TrainerPool, seed: string, slices: PlannerSlice[], runsBucket: string, packs: Packs) {
  let r = firstRounds.get(seed);
  if (!r) {
    const name = `round0-s${seed}`;
    const variant: Variant = { label: "round 0", replay: "CumulativeAll", knobs: { optimizerState: "Carry" } };
    const out = roundUri({ bucket: runsBucket, prefix: `${name}/` }, 0);
    const plan = roundPlan({
      name,
      replay: "CumulativeAll",
      variant,
      slices,
      t: 0,
      init: null,
      out,
      seed: 1000 * Number(seed),
    });
    r = trainRound(pool, "round 0 (shared)", plan, 0, packs);
    firstRounds.set(seed, r);
  }
  return r;
}

/** One chain of T rounds of a variant and seed: the merged (promotable) results, and the unmerged ones when it merges. */
async function chain(
  pool: TrainerPool,
  v: Variant,
  seed: string,
  slices: PlannerSlice[],
  runsBucket: string,
  packs: Packs,
  progress: () => string,
): Promise<Result[]> {
  const name = `${v.label
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/-$/, "")}-s${seed}`;
  const rows: Row[] = [];
  const rawRows: Row[] = [];
  const rounds: RoundStatus[] = [];
  const chances: number[] = [];
  let init: string | null = null;
  for (let t = 0; t < T; t++) {
    const trained: TrainedRound =
      t === 0
        ? await firstRound(pool, seed, slices, runsBucket, packs)
        : await trainRound(
            pool,
            v.label,
            roundPlan({
              name,
              replay: v.replay,
              variant: v,
              slices,
              t,
              init,
              out: roundUri({ bucket: runsBucket, prefix: `${name}/` }, t),
              seed: 1000 * Number(seed) + t,
            }),
            t,
            packs,
          );
    const { uri, plan, startedAt, finishedAt, scored } = trained;
    rows.push(scored.merged);
    // A round without a merge (round 0 from scratch) is its own unmerged model.
    rawRows.push(scored.unmerged ?? scored.merged);
    if (scored.chance !== undefined) chances.push(scored.chance);
    const id = scored.merged.row.cells[SLICE_IDS[t]!]!;
    rounds.push({
      index: t,
      slices: [SLICE_IDS[t]!],
      replay: v.replay,
      phase: "Trained",
      samples: plan.data.samples,
      startedAt,
      finishedAt,
      checkpoint: `${uri}${ROUND_FILES.checkpoint}`,
      metrics: { "retrieval.id.meanRecallAt1": id },
    });
    init = `${uri}${ROUND_FILES.checkpoint}`;
    const rawId = scored.unmerged ? ` (unmerged ${pts(scored.unmerged.row.cells[SLICE_IDS[t]!]!)})` : "";
    console.log(`  ${name} round ${t}: ${plan.data.samples} samples, ID R@1 ${pts(id)}${rawId} (${progress()})`);
  }
  const compute = computeAccounting(rounds.map((r) => ({ index: r.index, replay: v.replay, samples: r.samples! })));
  const result = (label: string, rs: Row[]): Result => {
    const matrix = ticMatrix(rs.map((r) => r.row));
    return {
      name: label === v.label ? name : `${name}-unmerged`,
      run: name,
      strategy: v.replay,
      ...(label !== v.replay ? { variant: label } : {}),
      seed,
      matrix,
      items: itemsOf(matrix, rs),
      rounds,
      compute,
      samplesSeen: compute.samplesSeen,
      savingVsOracle: compute.savingVsOracle,
      chance: chances.length === T ? chances.reduce((a, b) => a + b, 0) / T : undefined,
    };
  };
  return v.merge ? [result(v.label, rows), result(unmergedLabel(v.label), rawRows)] : [result(v.label, rows)];
}

/** Every variant for one seed, over the pool's workers (their chains interleave round by round). */
async function viaTrainerSeed(
  pool: TrainerPool,
  seed: string,
  prefix: string,
  runsBucket: string,
  packs: Packs,
): Promise<Result[]> {
  const slices = await sliceHistory(prefix);
  let done = 0;
  const total = VARIANTS.length * T;
  const progress = () => `${++done}/${total} of seed ${seed}, ${elapsed()}`;
  const chains = await Promise.all(VARIANTS.map((v) => chain(pool, v, seed, slices, runsBucket, packs, progress)));
  return chains.flat();
}

function runManifest(
  ns: string,
  name: string,
  replay: ReplayStrategy,
  dataBucket: string,
  seed: string,
  runsBucket: string,
) {
  return {
    apiVersion: "ticclip.dev/v1alpha1",
    kind: "ContinualClipRun",
    metadata: { name, namespace: ns, labels: { "ticclip.dev/experiment": "tic", "ticclip.dev/seed": seed } },
    spec: {
      source: {
        s3: {
          bucket: dataBucket,
          prefix: `seed-${seed}/slices/`,
          endpoint: requireEnv("S3_ENDPOINT"),
          credentialsSecretRef: { name: "s3-creds" },
        },
        pollInterval: "3s",
      },
      model: { architecture: "ticclip-tiny" },
      strategy: { replay, samplesPerRound: C, optimizer: { batchSize: BATCH, lr: LR, precision: "fp32" } },
      trainer: { image: TRAINER_IMAGE, gpusPerNode: 0, backoffLimit: 1, checkpointIntervalMinutes: 30 },
      artifacts: { s3: { bucket: runsBucket, prefix: `${name}/` } },
      evaluation: {
        runner: { mode: "InProcess" },
        gates: [{ metric: "retrieval.id.meanRecallAt1", op: ">=", value: 0.02 }],
      },
    },
  };
}

type RunStatus = {
  rounds?: RoundStatus[];
  compute?: { samplesSeen: number; oracleEquivalentSamples: number; savingVsOracle: number };
};

async function viaOperator(dataBucket: string, runsBucket: string, ns: string): Promise<Result[]> {
  for (const seed of SEEDS.slice(1)) synth(`s3://${dataBucket}/seed-${seed}/slices`, seed);
  createS3Secret(ns);
  const executor = startExecutor([ns], {}, trainerEnv);
  const operator = startOperator([ns]);
  console.log(`namespace ${ns}; operator log ${operator.logFile}; executor log ${executor.logFile}`);
  const runs = SEEDS.flatMap((seed) =>
    REPLAY_STRATEGIES.map((replay) => ({ seed, replay, name: `${replay.toLowerCase()}-s${seed}` })),
  );
  try {
    for (const r of runs)
      kubectlOk(
        ["apply", "-f", "-"],
        JSON.stringify(runManifest(ns, r.name, r.replay, dataBucket, r.seed, runsBucket)),
      );
    let lastLog = 0;
    await waitFor(
      "every run's rounds",
      () => {
        const states = runs.map((r) => ((getRun(ns, r.name)?.status ?? {}) as RunStatus).rounds ?? []);
        const failed = states.flat().find((x) => x.phase === "Failed");
        if (failed) throw new Error(`round ${failed.index} failed: ${failed.reason}: ${failed.message}`);
        const done = states.map((rs) => rs.filter((x) => FINAL.has(x.phase)).length);
        if (Date.now() - lastLog > 60_000) {
          lastLog = Date.now();
          console.log(`  rounds done ${done.reduce((a, b) => a + b, 0)}/${runs.length * T} (${elapsed()})`);
        }
        return done.every((d) => d >= T) || undefined;
      },
      3 * 60 * 60_000,
      3000,
    );
  } finally {
    await operator.stop();
    await executor.stop();
  }
  console.log(`all rounds trained and evaluated (${elapsed()}); re-scoring every round on every slice`);
  const results: Result[] = [];
  for (const r of runs) {
    const run = getRun(ns, r.name)!;
    const status = (run.status ?? {}) as RunStatus;
    const file = await rescoreRun(store, {
      run: { namespace: ns, name: r.name },
      spec: run.spec as never,
      rounds: status.rounds ?? [],
      now: new Date().toISOString(),
    });
    if (file.skipped.length) throw new Error(`${r.name}: rounds not scored: ${JSON.stringify(file.skipped)}`);
    results.push({
      name: r.name,
      run: r.name,
      strategy: r.replay,
      seed: r.seed,
      matrix: file.matrix,
      rounds: status.rounds ?? [],
      compute: status.compute,
      training: await readTrainingCurves(store, run.spec as never, status.rounds ?? []),
      samplesSeen: status.compute?.samplesSeen ?? 0,
      savingVsOracle: status.compute?.savingVsOracle ?? 0,
      chance: file.chance ?? undefined,
    });
  }
  return results;
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  console.log(
    `TiC experiment via ${VIA}: T=${T} slices of ${SLICE_SAMPLES} samples, C=${C}, ` +
      `seeds ${SEEDS.join(",")}, batch ${BATCH}, lr ${LR}`,
  );
  // The trainer driver needs only S3; the operator driver a namespace of the local cluster too.
  const ns = VIA === "operator" ? (applyCrds(), createNamespace("tic-exp")) : "";
  const suffix = ns ? ns.slice(-6) : randomBytes(3).toString("hex");
  const dataBucket = `tic-exp-data-${suffix}`;
  const runsBucket = `tic-exp-runs-${suffix}`;
  for (const b of [dataBucket, runsBucket]) await s3.send(new CreateBucketCommand({ Bucket: b }));
  const prefix = `s3://${dataBucket}/seed-${SEEDS[0]}/slices/`;
  synth(prefix, SEEDS[0]!);
  const packs = await retrievalPacks(store, prefix, SLICE_IDS);
  console.log(`slices written to ${prefix} (${elapsed()})`);

  const pool = new TrainerPool();
  let calibration: Calibration[] = [];
  const results: Result[] = [];
  const settings =
    `${GPU ? "TIC_PROFILE=gpu " : ""}${ABLATION ? "TIC_ABLATION=1 " : ""}TIC_VIA=${VIA} TIC_T=${T} TIC_C=${C} ` +
    `TIC_SEEDS=${SEEDS.join(",")} TIC_SLICE_SAMPLES=${SLICE_SAMPLES} TIC_EVAL_SAMPLES=${EVAL_SAMPLES} ` +
    `TIC_BATCH=${BATCH} TIC_LR=${LR} TIC_WORKERS=${WORKERS} TIC_MERGE=${MERGES.map((m) => `${m.mode}:${m.coefficient}`).join(",")}`;
  try {
    await pool.start(WORKERS);
    if (CALIBRATE) {
      calibration = await calibrate(pool, prefix, runsBucket, packs);
      report(calibration, results, settings, []);
    }
    if (process.env.TIC_CALIBRATE === "only") return;
    if (VIA === "trainer") {
      for (const seed of SEEDS) {
        results.push(...(await viaTrainerSeed(pool, seed, prefix, runsBucket, packs)));
        report(calibration, results, settings, [seed]);
      }
    }
  } finally {
    await pool.stop();
  }
  if (VIA === "operator") {
    results.push(...(await viaOperator(dataBucket, runsBucket, ns)));
    report(calibration, results, settings, SEEDS);
  }
}

/** Prints the tables so far and writes report.html and results.json (after the ladder and each seed). */
function report(calibration: Calibration[], results: Result[], settings: string, justFinished: string[]): void {
  const seedsDone = [...new Set(results.map((r) => r.seed))];
  const summaries = summarize(results, ORDER);
  const table = formatTable(summaries);
  const calibrationLines = calibration.map(
    (c) =>
      `${c.budget / C}C = ${c.budget} samples from scratch on all ${T} slices: mean R@1 ${pts(c.meanR1)}, ID ${pts(c.id)}`,
  );
  const stepCosts = [...new Set(costs.map((c) => c.label))].map((label) => {
    const cs = costs.filter((c) => c.label === label);
    const steps = cs.reduce((a, c) => a + c.steps, 0);
    return `${label}: ${((1000 * cs.reduce((a, c) => a + c.trainSeconds, 0)) / steps).toFixed(0)} ms per optimizer step over ${cs.length} rounds (${steps} steps)`;
  });
  const merges = costs.filter((c) => c.merge).map((c) => c.merge!);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const mergeLine = merges.length
    ? `Merge cost over ${merges.length} rounds: ${mean(merges.map((m) => m.seconds * 1000)).toFixed(1)} ms to merge, ` +
      `${mean(merges.map((m) => m.baseLoadSeconds)).toFixed(2)} s to load the base checkpoint, ` +
      `${(mean(merges.map((m) => m.extraBytes)) / 2 ** 20).toFixed(1)} MiB extra (base + merged copy), ` +
      `peak RSS ${(Math.max(...merges.map((m) => m.peakRssBytes)) / 2 ** 20).toFixed(0)} MiB`
    : "";
  if (justFinished.length || !results.length) {
    console.log(
      `\nCalibration (tiny model, Oracle mixture of all ${T} slices, seed 0):\n  ${calibrationLines.join("\n  ")}`,
    );
  }
  if (results.length) {
    console.log(
      `\nTiC matrix means after seeds ${seedsDone.join(",")} (${elapsed()}), R@1 in points: mean [95% bootstrap ` +
        `interval over seeds and pack items]:\n${table}`,
    );
  }
  const differences = differenceLines(results, ORDER);
  if (differences.length) console.log(`\n${differences.join("\n")}`);
  if (stepCosts.length) console.log(`\nTrainer cost (train_summary.json):\n  ${stepCosts.join("\n  ")}`);
  if (mergeLine) console.log(`  ${mergeLine}`);
  const notes = [
    `${settings} npm run experiment:tic`,
    `Seeds finished: ${seedsDone.join(",") || "none"} of ${SEEDS.join(",")}. Intervals: 95% percentile bootstrap over seeds and pack items (operator/report/summary.ts bootstrapCi).`,
    ...calibrationLines.map((l) => `Calibration: ${l}`),
    ...differences.flatMap((l) => l.split("\n")),
    ...stepCosts.map((l) => `Cost: ${l}`),
    ...(mergeLine ? [mergeLine] : []),
    `Wall time ${elapsed()}.`,
  ];
  const html = reportHtml({
    title: `TiC-CLIP on our stack: ${T} slices, C = ${C}, ${seedsDone.length} seeds${ABLATION ? ", ablation" : ""} (via ${VIA})`,
    generatedAt: new Date().toISOString(),
    runs: results,
    summaries,
    notes,
  });
  writeFileSync(path.join(OUT, "report.html"), html);
  const json = {
    via: VIA,
    T,
    C,
    seeds: SEEDS,
    seedsDone,
    sliceSamples: SLICE_SAMPLES,
    evalSamples: EVAL_SAMPLES,
    batch: BATCH,
    lr: LR,
    ablation: ABLATION,
    merges: MERGES,
    calibration,
    costs,
    summaries,
    runs: results.map(({ rounds: _r, ...rest }) => rest),
    wallTime: elapsed(),
  };
  writeFileSync(path.join(OUT, "results.json"), JSON.stringify(json, null, 2));
  console.log(`report: ${path.join(OUT, "report.html")}; results: ${path.join(OUT, "results.json")}; ${elapsed()}`);
}

await main();
