/** The upstream cell directories the aggregate reads, and how their files are named and read. */
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import type { Diagnostic } from "../../pipeline/engine/mod.ts";

/**
 * The folder of a generate cell that holds the solutions it rejected, each with a COMPILE_ERROR
 * trace (stages/generate/runners.ts writes it under the same name; stages never import each other).
 */
export const REJECTED_DIR = "rejected";

/** One upstream cell directory to read. */
export interface Fragment {
  stage: string;
  cellId: string;
  cellKey: string;
  dir: string;
  /** The cell's summary (the time stage's names the baseline it timed beside the candidate). */
  summary?: unknown;
  /** Where the cell's files that a shipped run packs lie (runs.ts PACKED_TIMINGS), if elsewhere. */
  packedDir?: string;
  /** "rejected": a generate cell's rejected/ folder, whose traces are expanded by load_derived.ts. */
  origin?: "judged" | "rejected";
}

/** Name under which a fragment's file appears in diagnostics and the report. */
export const displayName = (f: Fragment, abs: string) =>
  `${f.stage}/${f.cellId}/${relative(f.dir, abs)}`;

/** A file's text, or null with an error diagnostic when it cannot be read. */
export function readOrDiagnose(f: Fragment, p: string, diags: Diagnostic[]): string | null {
  try {
    return readFileSync(p, "utf8");
  } catch (e) {
    diags.push({
      level: "error",
      file: displayName(f, p),
      path: "$",
      message: `cannot read: ${(e as Error).message}`,
    });
    return null;
  }
}
