/**
 * The harness: the Python judge (judge/, protocol in PROTOCOL.md) and its Deno side, which the
 * judging stages (compile, verify, time) share: the client that runs judges in their own process
 * groups (client.ts), and the selection, scheduling and trace writing of judging cells
 * (judging.ts).
 */
export { type ClockLock, type ClockState, LOCK_CLOCKS_ENV, lockClocks } from "./clocks.ts";
export {
  type FiEvaluation,
  HarnessCell,
  HarnessError,
  HarnessSession,
  ProbeCapabilities,
  probeCapabilities,
  SessionPool,
  toEvaluation,
} from "./client.ts";
export {
  closeSharedSessions,
  type CompileSummary,
  corpusWorkloadsFirst,
  dependencyName,
  describeJobPhases,
  distinctSolutionsAndWorkloads,
  groupBy,
  groupCost,
  HARNESS_CODE,
  HARNESS_WORK_DIR,
  hasGpu,
  idleSharedSessions,
  mapWithSessions,
  mergeUpstream,
  notRunnableHere,
  prestartSharedSessions,
  SelectionParams,
  selectSolutions,
  verifyCost,
  type VerifySummary,
  writeTrace,
} from "./judging.ts";
