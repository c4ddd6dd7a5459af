/**
 * The synthetic decode-attention grid of the characterization profile (issue 20): which (head
 * configuration, head_dim, page size, batch size, KV length) points are measured, and which are
 * left out because their KV cache would not fit the memory budget. Pure: no files, no randomness.
 *
 * The design is sparse, because the full cross-product (5 head configurations × 3 head dims × 3 page
 * sizes × 9 batch sizes × 10 KV lengths) is about 4,000 workloads, hours of H100 time:
 * - `main`: the whole batch × KV-length grid of the main configuration (Llama-3.1-8B's 32/8 heads,
 *   head_dim 128, page size 16), with 128K tokens where the budget allows;
 * - `heads`: a coarse batch × KV-length grid for every other head configuration (same dim and page);
 * - `head_dim` and `page_size`: one-dimensional sweeps of the main configuration (KV length at one
 *   batch size, batch size at one KV length) for head_dim 64/256 and page sizes 1/64.
 * The main configuration's grid holds every point of the one-dimensional sweeps at d128/ps16, so each
 * sweep varies one factor against it.
 */

/** A query/KV head configuration and the models that have it. */
export interface HeadConfig {
  /** Short id used in tables and charts. */
  id: string;
  /** Models with these heads (unsharded, TP 1). */
  models: string[];
  num_qo_heads: number;
  num_kv_heads: number;
}

/**
 * The head configurations: data/models/model-configs.json gives Llama-3.1-8B (32/8), Llama-3.1-70B
 * (64/8) and Qwen3-30B-A3B (32/4); Mistral-7B (32/8, its Hugging Face config) shares Llama-3.1-8B's
 * heads, so the same definition serves both. MQA and MHA keep 32 query heads, so that only the KV
 * heads change against the main configuration.
 */
export const HEAD_CONFIGS: HeadConfig[] = [
  {
    id: "llama-3.1-8b",
    models: ["meta-llama/Llama-3.1-8B", "mistralai/Mistral-7B-v0.1"],
    num_qo_heads: 32,
    num_kv_heads: 8,
  },
  { id: "llama-3.1-70b", models: ["meta-llama/Llama-3.1-70B"], num_qo_heads: 64, num_kv_heads: 8 },
  { id: "qwen3-30b-a3b", models: ["Qwen/Qwen3-30B-A3B"], num_qo_heads: 32, num_kv_heads: 4 },
  {
    id: "mqa",
    models: ["multi-query attention (kv heads = 1)"],
    num_qo_heads: 32,
    num_kv_heads: 1,
  },
  {
    id: "mha",
    models: ["multi-head attention (kv heads = qo heads, e.g. Llama-2-7B)"],
    num_qo_heads: 32,
    num_kv_heads: 32,
  },
];

/** Batch sizes of a full grid row. */
export const BATCH_SIZES = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/** KV lengths (tokens per sequence) of a full grid column; 128K only where the budget allows. */
export const KV_LENGTHS = [128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 131072];
/** The coarse grid of the `heads` sweep. */
export const COARSE_BATCHES = [1, 8, 64, 256];
export const COARSE_KV_LENGTHS = [128, 512, 2048, 8192, 32768];
/** Where the one-dimensional sweeps cut the main grid: KV lengths at this batch size… */
export const SWEEP_BATCH = 16;
/** …and batch sizes at this KV length. */
export const SWEEP_KV_LENGTH = 4096;
export const HEAD_DIMS = [64, 128, 256];
export const PAGE_SIZES = [1, 16, 64];
/** The main configuration's head_dim and page size. */
export const MAIN_HEAD_DIM = 128;
export const MAIN_PAGE_SIZE = 16;

/** Which grid to write: none, the main configuration only, the sparse design, or everything. */
export type GridName = "none" | "main" | "sparse" | "full";

import type { GridPoint, Sweep } from "../../pipeline/trace/mod.ts";
export type { GridPoint, Sweep };

/** A point left out, and why. */
export interface DroppedPoint {
  definition: string;
  batch_size: number;
  kv_len: number;
  kv_bytes: number;
  reason: string;
}

/** flashinfer-bench's name of a paged GQA decode definition. */
export const decodeDefinitionName = (
  qo: number,
  kv: number,
  d: number,
  ps: number,
) => `gqa_paged_decode_h${qo}_kv${kv}_d${d}_ps${ps}`;

/** Bytes of the K and V cache pages a batch of `batch` sequences of `kvLen` tokens reads (bf16). */
export function kvCacheBytes(
  c: Pick<HeadConfig, "num_kv_heads">,
  headDim: number,
  pageSize: number,
  batch: number,
  kvLen: number,
): number {
  const pages = batch * Math.ceil(kvLen / pageSize);
  return 2 * pages * pageSize * c.num_kv_heads * headDim * 2;
}

const GiB = 1024 ** 3;

/** Formats a byte count in GiB/MiB for a reason line. */
export const formatBytes = (b: number) =>
  b >= GiB ? `${+(b / GiB).toFixed(2)} GiB` : `${+(b / 1024 ** 2).toFixed(1)} MiB`;

interface Slice {
  sweep: Sweep;
  config: HeadConfig;
  headDim: number;
  pageSize: number;
  pairs: Array<[number, number]>;
}

const cross = (bs: number[], ks: number[]): Array<[number, number]> =>
  bs.flatMap((b) => ks.map((k): [number, number] => [b, k]));

function slices(grid: GridName): Slice[] {
  const main = HEAD_CONFIGS[0];
  const base = { config: main, headDim: MAIN_HEAD_DIM, pageSize: MAIN_PAGE_SIZE };
  if (grid === "none") return [];
  if (grid === "full") {
    return HEAD_CONFIGS.flatMap((config) =>
      HEAD_DIMS.flatMap((headDim) =>
        PAGE_SIZES.map((pageSize) => ({
          sweep: "full" as const,
          config,
          headDim,
          pageSize,
          pairs: cross(BATCH_SIZES, KV_LENGTHS),
        }))
      )
    );
  }
  const out: Slice[] = [{ sweep: "main", ...base, pairs: cross(BATCH_SIZES, KV_LENGTHS) }];
  if (grid === "main") return out;
  for (const config of HEAD_CONFIGS.slice(1)) {
    out.push({ sweep: "heads", ...base, config, pairs: cross(COARSE_BATCHES, COARSE_KV_LENGTHS) });
  }
  const oneD = [
    ...cross([SWEEP_BATCH], KV_LENGTHS),
    ...cross(BATCH_SIZES, [SWEEP_KV_LENGTH]),
  ];
  for (const headDim of HEAD_DIMS.filter((d) => d !== MAIN_HEAD_DIM)) {
    out.push({ sweep: "head_dim", ...base, headDim, pairs: oneD });
  }
  for (const pageSize of PAGE_SIZES.filter((p) => p !== MAIN_PAGE_SIZE)) {
    out.push({ sweep: "page_size", ...base, pageSize, pairs: oneD });
  }
  return out;
}

/**
 * The points of a grid, those over `maxKvBytes` left out with the reason. Points are unique per
 * (definition, batch, KV length), a point in several sweeps listing each; they are ordered by
 * definition, then KV length, then batch size.
 */
export function decodeGrid(
  grid: GridName,
  maxKvBytes: number,
): { points: GridPoint[]; dropped: DroppedPoint[] } {
  const points = new Map<string, GridPoint>();
  const dropped = new Map<string, DroppedPoint>();
  for (const s of slices(grid)) {
    const c = s.config;
    const definition = decodeDefinitionName(
      c.num_qo_heads,
      c.num_kv_heads,
      s.headDim,
      s.pageSize,
    );
    for (const [batch, kvLen] of s.pairs) {
      const key = `${definition} ${batch} ${kvLen}`;
      const kvBytes = kvCacheBytes(c, s.headDim, s.pageSize, batch, kvLen);
      if (kvBytes > maxKvBytes) {
        dropped.set(key, {
          definition,
          batch_size: batch,
          kv_len: kvLen,
          kv_bytes: kvBytes,
          reason: `KV cache ${formatBytes(kvBytes)} over the budget of ${formatBytes(maxKvBytes)}`,
        });
        continue;
      }
      const p = points.get(key) ?? {
        definition,
        config: c.id,
        num_qo_heads: c.num_qo_heads,
        num_kv_heads: c.num_kv_heads,
        head_dim: s.headDim,
        page_size: s.pageSize,
        batch_size: batch,
        kv_len: kvLen,
        kv_bytes: kvBytes,
        sweeps: [],
      };
      if (!p.sweeps.includes(s.sweep)) p.sweeps.push(s.sweep);
      points.set(key, p);
    }
  }
  const order = (a: { definition: string; kv_len: number; batch_size: number }, b: typeof a) =>
    a.definition < b.definition
      ? -1
      : a.definition > b.definition
      ? 1
      : a.kv_len - b.kv_len || a.batch_size - b.batch_size;
  return { points: [...points.values()].sort(order), dropped: [...dropped.values()].sort(order) };
}
