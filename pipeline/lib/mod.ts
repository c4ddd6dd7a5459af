/**
 * Small helpers with no domain, which any stage, the harness client or the engine may import:
 * a seeded random generator, DuckDB, Vega-Lite rendering and the choice of Python interpreter.
 * Nothing here knows FlashInfer, a stage or the store.
 *
 * A stage imports the file it needs (`pipeline/lib/rng.ts`), not this face, so that its cell keys
 * digest only that file: the face exists to list what the folder offers.
 */
export { rng } from "./rng.ts";
export { openDuckDB } from "./duckdb.ts";
export { renderSvg } from "./vega.ts";
export { findPython } from "./python.ts";
