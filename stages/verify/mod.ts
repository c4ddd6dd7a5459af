/** verify: every solution judged on its workloads by the harness. */
export {
  chooseWorkloads,
  corpusRootsOf,
  VerifyParams,
  verifyStage,
  workloadsFor,
} from "./stage.ts";
