/**
 * Artifact evaluation: `tp claims` (each claim of claims.json decided on a run), `tp report`
 * (the committed report rebuilt from the shipped runs alone, byte for byte) and the cell-by-cell
 * comparison of a new GPU run with a shipped one (`deno task ae:full`). Application code like the
 * CLI: it may import every face and the aggregate stage's; no library package or stage imports it.
 */
export { CLAIMS_USAGE, claimsCommand, compareReport, reportCommand } from "./command.ts";
export {
  type CellDiff,
  type CellRow,
  compareCells,
  type Comparison,
  comparisonLines,
  parseCellsCsv,
  TIMER_FLOOR_US,
  type Tolerance,
  toleranceText,
} from "./compare.ts";
