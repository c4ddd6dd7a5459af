/** aggregate: every trace in DuckDB; the paper's tables, charts and the HTML report. */
export { aggregateStage, PUBLISH_DIR, publishReports, publishTarget } from "./stage.ts";
export { gemmDefinition, rmsnormDefinition, syntheticSolution } from "./synth.ts";
export { AggregateParams } from "./params.ts";
export {
  buildShippedReport,
  claimsOnRuns,
  type ClaimsOnRunsInput,
  THIS_MACHINE,
} from "./report_runs.ts";
export { claimLines, type ClaimResult, ClaimsError } from "./claims.ts";
export {
  listShippedRuns,
  PACKED_CELLS,
  PACKED_FILES,
  PACKED_STAGES,
  PACKED_TIMINGS,
  readRunFolder,
  RUN_STAGES,
  RunFolderError,
  type RunMeta,
  type ShippedCell,
  type ShippedRun,
} from "./runs.ts";
