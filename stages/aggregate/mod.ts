/** aggregate: every trace in DuckDB; the paper's tables, charts and the HTML report. */
export { aggregateStage } from "./stage.ts";
export { gemmDefinition, rmsnormDefinition } from "./synth.ts";
