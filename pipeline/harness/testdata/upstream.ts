/**
 * What a judging stage plans from, for its plan tests: the upstream cells holding the rmsnorm
 * definition, workloads of given batch sizes and one solution.
 */
import type { CellResult } from "../../engine/mod.ts";
import {
  formatSolution,
  type Solution,
  solutionPath,
  type Trace,
  workloadsPath,
} from "../../trace/mod.ts";
import {
  RMSNORM_DEF,
  RMSNORM_DEF_PATH,
  rmsnormDefinitionText,
  rmsnormWorkloadsJsonl,
} from "../../../tests/fixtures/rmsnorm.ts";
import { fragmentCell } from "../../../tests/stages.ts";

/**
 * The `definitions`, `extract` and `generate` cells of the rmsnorm definition, workloads of these
 * batch sizes (uuid `b<batch>`, returned beside them) and `solution`.
 */
export function rmsnormPlanUpstream(
  batches: number[],
  solution: Solution,
): { workloads: Trace["workload"][]; cells: Record<string, CellResult[]> } {
  const workloads = batches.map((b) => ({ axes: { batch_size: b }, inputs: {}, uuid: `b${b}` }));
  return {
    workloads,
    cells: {
      definitions: [fragmentCell("definitions", { [RMSNORM_DEF_PATH]: rmsnormDefinitionText() })],
      extract: [fragmentCell("llama", {
        [workloadsPath("rmsnorm", RMSNORM_DEF)]: rmsnormWorkloadsJsonl(workloads),
      })],
      generate: [fragmentCell("kernels", {
        [solutionPath(solution, "rmsnorm")]: formatSolution(solution),
      })],
    },
  };
}
