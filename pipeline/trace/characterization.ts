/**
 * The decode-characterization grid's manifest (`characterization.json` in an extract cell): which
 * workload is which point of the grid, and the points left out. `extract` writes it and `aggregate`
 * reads it, so its shape lives here, beside the other files of a TraceSet fragment.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { fromZodError } from "../engine/mod.ts";

/** The manifest's file name in an extract cell. */
export const CHARACTERIZATION_FILE = "characterization.json";

/** The sweeps a point belongs to. */
export const Sweep = z.enum(["main", "heads", "head_dim", "page_size", "full"]);
/** The sweeps a point belongs to. */
export type Sweep = z.infer<typeof Sweep>;

/** One measured point: one workload of one definition. */
export const GridPoint = z.object({
  definition: z.string(),
  config: z.string(),
  num_qo_heads: z.number().int().positive(),
  num_kv_heads: z.number().int().positive(),
  head_dim: z.number().int().positive(),
  page_size: z.number().int().positive(),
  batch_size: z.number().int().positive(),
  /** Tokens per sequence (every sequence of the batch has this length). */
  kv_len: z.number().int().positive(),
  /** Bytes of the K and V pages the batch reads (bf16). */
  kv_bytes: z.number().nonnegative(),
  sweeps: z.array(Sweep),
});
/** One measured point: one workload of one definition. */
export type GridPoint = z.infer<typeof GridPoint>;

/** A point of the manifest: the grid point and the uuid of its workload. */
export const ManifestPoint = GridPoint.extend({ uuid: z.string() });
/** A point of the manifest: the grid point and the uuid of its workload. */
export type ManifestPoint = z.infer<typeof ManifestPoint>;

/**
 * The points of a manifest file; a file that is not one throws an Error of one line naming the file,
 * the field and the reason.
 */
export function readManifestPoints(file: string): ManifestPoint[] {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new Error(`${file}: $: ${(e as Error).message}`);
  }
  const parsed = z.object({ points: z.array(ManifestPoint) }).passthrough().safeParse(raw);
  if (!parsed.success) {
    const d = fromZodError(parsed.error, file)[0];
    throw new Error(
      `${file}: ${d?.path ?? "$"}: ${d?.message ?? "not a characterization manifest"}`,
    );
  }
  return parsed.data.points;
}
