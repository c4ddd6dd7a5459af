/**
 * The serving-engine config: SGLang-like scheduler defaults, GPU memory and a roofline used only
 * to order events in time. Every default is documented in docs/workloads.md.
 */
import { z } from "zod";
import type { ModelShape } from "./model.ts";

/** Engine config; defaults follow SGLang's server arguments where SGLang has one. */
export const EngineConfig = z.object({
  /** Label used in cell ids. */
  name: z.string().regex(/^[A-Za-z0-9._-]+$/).default("sglang-ps1"),
  /** Tokens per KV page (SGLang `--page-size`, default 1; 64 for the ps64 definitions). */
  pageSize: z.number().int().positive().default(1),
  /** Max new tokens of one extend batch, chunking longer prompts (SGLang `--chunked-prefill-size`). */
  chunkedPrefillSize: z.number().int().positive().default(8192),
  /** Max prompt tokens admitted into one extend batch (SGLang `--max-prefill-tokens`, 16384). */
  maxPrefillTokens: z.number().int().positive().default(16384),
  /** Max requests decoding at once (SGLang `--max-running-requests`; 256 here). */
  maxRunningRequests: z.number().int().positive().default(256),
  /** GPU memory per rank, GB (1e9 bytes): an H100 SXM has 80. */
  gpuMemoryGB: z.number().positive().default(80),
  /** Share of GPU memory for weights + KV cache (SGLang `--mem-fraction-static`, 0.88 at 80 GB). */
  memFractionStatic: z.number().gt(0).lte(1).default(0.88),
  /** Reuse KV of shared prompt prefixes (SGLang's radix cache; off = `--disable-radix-cache`). */
  prefixCaching: z.boolean().default(true),
  /** Share of each running request's remaining output reserved when admitting (SGLang 0.7). */
  newTokenRatio: z.number().min(0).max(1).default(0.7),
  /** Peak dense bf16 throughput, TFLOP/s (H100 SXM: 989), for the ordering-only latency model. */
  peakTflops: z.number().positive().default(989),
  /** HBM bandwidth, GB/s (H100 SXM: 3350). */
  hbmGBps: z.number().positive().default(3350),
  /** Fixed cost per kernel launch, µs. */
  launchUs: z.number().nonnegative().default(4),
  /** Fixed scheduler cost per iteration, µs. */
  iterationOverheadUs: z.number().nonnegative().default(100),
  /** Default sampling parameters written into sampling workloads (top_k, top_p). */
  topK: z.number().int().positive().default(50),
  topP: z.number().gt(0).lte(1).default(0.9),
});
export type EngineConfig = z.infer<typeof EngineConfig>;

/** Thrown when the model cannot run under the engine config (names the field). */
export class EngineConfigError extends Error {}

/** KV pool size in pages: GPU memory × static fraction − weights, over the KV bytes of a page. */
export function kvCapacityPages(model: ModelShape, eng: EngineConfig): number {
  const budget = eng.gpuMemoryGB * 1e9 * eng.memFractionStatic;
  const free = budget - model.weightBytes;
  const pageBytes = model.kvBytesPerToken * eng.pageSize;
  const pages = Math.floor(free / pageBytes);
  if (free <= 0 || pages < 2) {
    throw new EngineConfigError(
      `engine "${eng.name}": gpuMemoryGB=${eng.gpuMemoryGB} × memFractionStatic=${eng.memFractionStatic} ` +
        `= ${(budget / 1e9).toFixed(1)} GB cannot hold model "${model.name}" ` +
        `(${(model.weightBytes / 1e9).toFixed(1)} GB of weights per rank) plus a KV cache`,
    );
  }
  return pages;
}
