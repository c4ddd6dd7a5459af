/**
 * The harness: the Python judge (judge/, protocol in PROTOCOL.md) and its Deno side, which the
 * judging stages (compile, verify, time) share: the client that runs judges in their own process
 * groups (client.ts), and the selection, scheduling and trace writing of judging cells
 * (judging.ts), the CPU-sized selection of machines without a GPU (cpu_selection.ts) and the
 * progress lines of long harness jobs (heartbeat.ts).
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
  type CpuSelection,
  cpuSelectionEscape,
  cpuSelectionFields,
  cpuSelectionInForce,
  cpuSelectionNotRunnable,
  cpuSelectionReason,
  formatCost,
  workloadCost,
} from "./cpu_selection.ts";
export { formatSeconds, Heartbeat, type HeartbeatOptions } from "./heartbeat.ts";
export {
  cellProgress,
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
  runGroupJob,
  SelectionParams,
  selectSolutions,
  verifyCost,
  type VerifySummary,
  writeTrace,
} from "./judging.ts";
