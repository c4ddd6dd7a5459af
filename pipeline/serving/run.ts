/**
 * One simulation run from its resolved config: the request trace, the model's shape and the engine,
 * replayed through the scheduling model. collect records what it calls; extract replays the same
 * config to capture the batches behind each workload; both read it from here.
 */
import { basename, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { EngineConfig, kvCapacityPages } from "./engine.ts";
import { deriveShape, loadModelConfig } from "./model.ts";
import { simulate } from "./simulate.ts";
import { KNOWN_TRACES, loadTrace, type TraceFormat } from "./traces.ts";

/** A request trace: a known name (see KNOWN_TRACES) or an explicit path + format. */
export const TraceSpec = z.object({
  /** Known trace name (`azure-conv`, `azure-code`, `mooncake-conversation`, `mooncake-synthetic`, `sharegpt`). */
  name: z.string().regex(/^[A-Za-z0-9._-]+$/),
  /** Repo-relative (or absolute) file; defaults to the known trace's file. */
  path: z.string().optional(),
  format: z.enum(["azure-csv", "mooncake-jsonl", "length-stats-csv"]).optional(),
  /** Keep only the first N requests (by arrival); default all. */
  limit: z.number().int().positive().optional(),
  /** Poisson arrival rate, requests/s, for traces without timestamps (ShareGPT); default 2. */
  rate: z.number().positive().default(2),
  /** Seed of the Poisson arrivals. */
  seed: z.number().int().nonnegative().default(0),
  /** Prefix-block size of hash_ids, tokens (Mooncake: 512). */
  blockTokens: z.number().int().positive().optional(),
});
export type TraceSpec = z.infer<typeof TraceSpec>;

/** A model and how it is deployed. */
export const ModelSpec = z.object({
  /** Key in the model-configs file, e.g. `meta-llama/Llama-3.1-8B`. */
  name: z.string().min(1),
  /** Tensor-parallel degree. */
  tp: z.number().int().positive().default(1),
  /** Expert-parallel degree (divides tp). */
  ep: z.number().int().positive().default(1),
  /** Overrides the engine's gpuMemoryGB for this model (DeepSeek-V3 needs H200-class GPUs). */
  gpuMemoryGB: z.number().positive().optional(),
});
export type ModelSpec = z.infer<typeof ModelSpec>;

/** A cell's resolved inputs, written to config.json so extract can replay the simulation. */
export interface SimConfig {
  trace: {
    name: string;
    path: string;
    format: TraceFormat;
    limit?: number;
    rate: number;
    seed: number;
    blockTokens: number;
  };
  model: ModelSpec;
  modelConfigs: string;
  engine: EngineConfig;
  seed: number;
  expertSkew: number;
}

/** Slug of a model name for ids and file names: `meta-llama/Llama-3.1-8B` → `llama-3.1-8b`. */
export const modelSlug = (name: string) =>
  basename(name).toLowerCase().replace(/[^a-z0-9._-]/g, "-");

/** `p` as an absolute path, relative paths taken from `root` (the repository). */
export const resolvePath = (root: string, p: string) => (isAbsolute(p) ? p : resolve(root, p));

/** Resolves a trace spec against the known traces. */
export function resolveTrace(t: TraceSpec): SimConfig["trace"] {
  const known = KNOWN_TRACES[t.name];
  const path = t.path ?? known?.path;
  const format = t.format ?? known?.format;
  if (!path || !format) {
    throw new Error(
      `collect: trace "${t.name}" is not known (${
        Object.keys(KNOWN_TRACES).join(", ")
      }); give path and format`,
    );
  }
  return {
    name: t.name,
    path,
    format,
    limit: t.limit,
    rate: t.rate,
    seed: t.seed,
    blockTokens: t.blockTokens ?? known?.blockSize ?? 512,
  };
}

/** Runs one simulation cell's simulation from its config (also used by extract's replay). */
export function runSimulation(
  root: string,
  cfg: SimConfig,
  onIteration?: Parameters<typeof simulate>[4]["onIteration"],
) {
  const reqs = loadTrace(
    resolvePath(root, cfg.trace.path),
    cfg.trace.format,
    cfg.trace,
    cfg.trace.path,
  );
  const mc = loadModelConfig(resolvePath(root, cfg.modelConfigs), cfg.model.name, cfg.modelConfigs);
  const engine = { ...cfg.engine, gpuMemoryGB: cfg.model.gpuMemoryGB ?? cfg.engine.gpuMemoryGB };
  const shape = deriveShape(cfg.model.name, mc, cfg.model, engine.pageSize);
  const pool = kvCapacityPages(shape, engine);
  const sim = simulate(reqs, shape, engine, pool, {
    seed: cfg.seed,
    expertSkew: cfg.expertSkew,
    blockTokens: cfg.trace.blockTokens,
    onIteration,
  });
  return { reqs, shape, engine, pool, sim };
}
