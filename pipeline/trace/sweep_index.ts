/**
 * The sweep index: tracepipe's record, beside a generate cell's solutions, of which solution is
 * which point of which kernel's parameter sweep (`sweep-index.json`). generate writes it;
 * aggregate reads it to pick the best point per (kernel, definition).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** The file name of the index inside a generate cell. */
export const SWEEP_INDEX_FILE = "sweep-index.json";

/** A sweep parameter's value. */
export type ParamValue = number | boolean | string;

/** Maps a sweep solution back to its kernel, definition and point. */
export interface SweepIndexEntry {
  solution: string;
  kernel: string;
  definition: string;
  point: Record<string, ParamValue>;
}

/** Reads a generate cell's sweep index (empty when the cell swept nothing). */
export function readSweepIndex(cellDir: string): SweepIndexEntry[] {
  const p = join(cellDir, SWEEP_INDEX_FILE);
  return existsSync(p) ? JSON.parse(readFileSync(p, "utf8")) : [];
}
