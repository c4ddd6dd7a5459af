/** verify: every solution judged on its workloads by the harness. */
export { verifyStage, workloadsFor } from "./stage.ts";
