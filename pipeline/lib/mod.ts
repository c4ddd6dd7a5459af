/**
 * Small helpers with no domain, which the engine, the harness client and any stage may import:
 * a seeded random generator, the one choice of Python interpreter, the report's CSV, and which
 * errors are a file system refusing a user's path. Nothing here knows FlashInfer, a stage or the
 * store.
 *
 * Two more helpers are entry points of their own, imported by file, because a face is loaded
 * whole at run time and they load heavy packages: `duckdb.ts` (DuckDB's native binding) and
 * `vega.ts` (Vega-Lite rendering). So the GPU stages, which import this face, never load DuckDB.
 */
export { parseCsv, parseCsvRows } from "./csv.ts";
export { isPathError } from "./fs_errors.ts";
export { findPython } from "./python.ts";
export { rng } from "./rng.ts";
