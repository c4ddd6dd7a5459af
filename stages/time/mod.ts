/** time: every passing (solution, workload) timed beside the reference and the baseline. */
export { timeStage } from "./stage.ts";
