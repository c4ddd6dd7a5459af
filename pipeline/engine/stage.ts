/**
 * The stage contract. A stage declares what its results depend on (params, upstream stages,
 * env vars, toolchain facts, code) and splits its work into cells. The engine (dag.ts) keys
 * every cell, looks it up in the store, runs only the missing ones, and hands each downstream
 * stage the finished cells of its upstream stages.
 */
import type { z } from "zod";
import type { Gpu, Toolchain } from "./toolchain.ts";

/** Which pool a cell's work runs in; the engine limits each pool's parallelism. */
export type Resource = "cpu" | "gpu";

/**
 * `pure`: deterministic, reusable anywhere. `hardware`: keyed on toolchain and GPU facts; kept
 * until forced. `volatile`: always re-run (still recorded).
 */
export type StagePolicy = "pure" | "hardware" | "volatile";

/** A finished cell of an upstream stage, as a downstream stage sees it. */
export interface CellResult {
  /** Unique within its stage, e.g. `"gemm_n4096_k4096/my_solution"`; safe as a path. */
  id: string;
  /** The cell key (sha256 hex). */
  key: string;
  /** Digest of the cell's output manifest: changes iff an output byte changes. */
  digest: string;
  /** Read-only directory holding the cell's output files. */
  dir: string;
  /** Small JSON the cell chose to publish for planning downstream (see CellJob.setSummary). */
  summary: unknown;
}

/** Everything a stage sees when it plans its cells. */
export interface PlanContext<P> {
  params: P;
  /** The repository root (absolute path). */
  root: string;
  /** The finished cells of each upstream stage, by stage name, in a stable order. */
  upstream: Record<string, CellResult[]>;
  toolchain: Toolchain;
  /** Values of the stage's declared env vars (missing ones are absent). */
  env: Record<string, string>;
  log: (msg: string) => void;
}

/** One unit of cached work, as planned by a stage. */
export interface CellPlan {
  id: string;
  /** The params this cell reads (only these enter its key). */
  params: unknown;
  /** Logical input name → content digest (sha256 hex) of everything else the cell reads. */
  inputs: Record<string, string>;
  /** Extra toolchain facts that enter the key, beyond the stage's own. */
  toolchain?: Record<string, unknown>;
  /** When set, the cell cannot run on this machine: it is listed with this reason and skipped. */
  notRunnable?: string;
  /** Free data the stage passes to itself from plan to run (not part of the key). */
  payload?: unknown;
  /** Overrides the stage's resource for this cell. */
  resource?: Resource;
}

/** A cell being executed: where to write, how to log, and how to publish a summary. */
export interface CellJob {
  plan: CellPlan;
  key: string;
  /** Empty directory to write the cell's outputs into (moved into the store when the cell ends). */
  outDir: string;
  log: (msg: string) => void;
  /** Records a small JSON summary that downstream planners read without opening files. */
  setSummary: (summary: unknown) => void;
  /**
   * Adds facts about how the cell ran to its provenance record (`provenance.stage`), never to its
   * key: say, whether the GPU clocks were locked. Optional: a stage tested without the engine may
   * be given a job without it.
   */
  recordProvenance?: (facts: Record<string, unknown>) => void;
  signal: AbortSignal;
}

/** A pipeline stage. `P` is the type of its parsed params. */
export interface Stage<P = unknown> {
  name: string;
  description: string;
  policy: StagePolicy;
  /** zod schema of the params this stage reads (defaults fill in what the user left out). */
  params: z.ZodType<P>;
  /** Env vars that change results; their values enter every cell key. */
  env: string[];
  resource: Resource;
  /**
   * `import.meta.url` of the stage module: its local import graph is hashed into the code digest,
   * so editing any module the stage runs invalidates its cells.
   */
  module: string;
  /** Non-TypeScript files the stage executes (Python harness, kernel templates), repo-relative. */
  codeFiles?: string[];
  /**
   * Starts, in the background, what the stage's cells will need (say, worker processes), as the pipeline
   * begins and before it probes its toolchain; `gpus` resolves to the GPUs found. Called only for stages
   * the run includes; it must leave nothing behind that costs more than an idle process.
   */
  prewarm?(params: P, gpus: Promise<Gpu[]>): void;
  /**
   * Copies what the stage's latest cells publish out of the store after a run that included the
   * stage (aggregate writes the report into reports/). Optional; the CLI calls every stage's.
   */
  publish?(ctx: PublishContext): Promise<void> | void;
  /** The toolchain facts this stage's results depend on. */
  toolchainFacts(tc: Toolchain): Record<string, unknown>;
  plan(ctx: PlanContext<P>): Promise<CellPlan[]>;
  /** Runs one cell. Either this or runBatch must be given. */
  run?(job: CellJob, ctx: PlanContext<P>): Promise<void>;
  /**
   * Runs many cells at once (e.g. one harness process for many workloads). It must call
   * `complete(job)` as each cell's outputs are written, so finished cells are kept even if
   * the batch is killed; jobs never completed count as failed.
   */
  runBatch?(
    jobs: CellJob[],
    ctx: PlanContext<P>,
    complete: (job: CellJob) => Promise<void>,
  ): Promise<void>;
}

/**
 * A stage in its place in the DAG: the registry (stages/mod.ts), the only place the DAG is
 * declared, adds the names of the upstream stages whose finished cells `plan` receives.
 */
export type PipelineStage<P = unknown> = Stage<P> & { upstream: string[] };

/** What a stage's publish hook is given after a run: its latest cells and the repository root. */
export interface PublishContext {
  cells: CellResult[];
  root: string;
  log: (msg: string) => void;
}

/**
 * Identity helper that keeps a stage's param type checked where it is defined. A stage module
 * gives no upstream (the registry does); the engine's own tests define whole pipeline stages.
 */
export function defineStage<P>(stage: PipelineStage<P>): PipelineStage<P>;
export function defineStage<P>(stage: Stage<P>): Stage<P>;
export function defineStage<P>(stage: Stage<P>): Stage<P> {
  return stage;
}
