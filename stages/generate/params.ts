/** The generate stage's params schema and its defaults. See docs/generate.md. */
import { z } from "zod";
import { AGENT_LANGUAGES } from "./llm/agent.ts";

/** The corpora the default profile imports (copies of shared variants; see data/corpus/SOURCES.md). */
export const DEFAULT_CORPORA = [
  "data/corpus/pr221-gpt-5",
  "data/corpus/fib-example-ffi",
  "data/corpus/xslingcn-flashinfer-trace-2025-08",
];

const Campaign = z.object({
  /** Regex fully matched against definition names. */
  definition: z.string().min(1),
  language: z.enum(AGENT_LANGUAGES),
  /** Defaults to TRACEPIPE_LLM_MODEL at plan time. */
  model: z.string().min(1).optional(),
  hardware: z.string().min(1).optional(),
  rounds: z.number().int().positive().optional(),
});

/** The stage's params (defaults fill in what the profile leaves out). */
export const GenerateParams = z.object({
  corpus: z.array(z.string().min(1)).default(DEFAULT_CORPORA),
  kernels: z.object({
    roots: z.array(z.string().min(1)).default(["cuda", "triton", "baselines"]),
    mode: z.enum(["grid", "default"]).default("grid"),
    /** Optional regex over "<root>/<folder>" selecting kernels. */
    include: z.string().optional(),
    /** In grid mode, sweep the whole grid only on definitions matching this; others get the default point. */
    grid_regex: z.string().optional(),
  }).prefault({}),
  llm: z.object({
    campaigns: z.array(Campaign).default([]),
    rounds: z.number().int().positive().default(10),
    hardware: z.string().min(1).default("H100"),
    temperature: z.number().min(0).optional(),
    top_p: z.number().min(0).max(1).optional(),
    max_tokens: z.number().int().positive().optional(),
    seed: z.number().int().optional(),
    reasoning_effort: z.string().optional(),
    stream: z.boolean().default(true),
    timeoutMs: z.number().int().positive().default(600_000),
    maxRetries: z.number().int().min(0).max(10).default(4),
    backoffMs: z.number().int().min(0).default(1000),
    maxBackoffMs: z.number().int().min(0).default(60_000),
    budget: z.object({
      maxTokens: z.number().int().positive().optional(),
      maxCostUsd: z.number().positive().optional(),
      inputUsdPerMTok: z.number().min(0).default(0),
      outputUsdPerMTok: z.number().min(0).default(0),
    }).prefault({}),
    recordings: z.string().default("data/llm-recordings"),
    /** `replay`: never call the endpoint or the harness; a missing recording is an error. */
    mode: z.enum(["auto", "replay"]).default("auto"),
    workloadSeed: z.number().int().default(0),
  }).prefault({}),
});
export type GenerateParams = z.infer<typeof GenerateParams>;
