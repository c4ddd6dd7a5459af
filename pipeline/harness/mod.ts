/**
 * The harness: the Python judge (judge/, protocol in PROTOCOL.md) and its Deno side, which the
 * judging stages (compile, verify, time) share: the client that runs judges in their own process
 * groups (client.ts), the selection, costs and trace writing of judging cells (judging.ts), the
 * lanes that spread harness jobs over the GPUs of a host (lanes.ts) and the GPUs a run judges on,
 * each under a host-wide lock (gpus.ts), the CPU-sized selection of machines without a GPU
 * (cpu_selection.ts) and the progress lines of long harness jobs (heartbeat.ts).
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
  cpuSelectionFields,
  cpuSelectionInForce,
  cpuSelectionLine,
  cpuSelectionNotRunnable,
  cpuSelectionPicker,
  cpuSelectionReason,
  workloadCost,
} from "./cpu_selection.ts";
export {
  FAKE_GPUS_ENV,
  GPU_LOCK_DIR_ENV,
  gpuLabel,
  gpuLockHolder,
  gpuProvenance,
  GPUS_ENV,
  GpuSelectionError,
  hostGpus,
  judgeEnv,
  laneGpus,
  parseGpuSelection,
  takeGpuLock,
} from "./gpus.ts";
export { formatSeconds, Heartbeat, type HeartbeatOptions } from "./heartbeat.ts";
export {
  cellProgress,
  type CompileSummary,
  corpusWorkloadsFirst,
  dependencyName,
  distinctSolutionsAndWorkloads,
  groupBy,
  groupCost,
  HARNESS_WORK_DIR,
  hasGpu,
  type JudgedCell,
  mergeUpstream,
  notRunnableHere,
  runGroupJob,
  SelectionParams,
  selectSolutions,
  verifyCost,
  type VerifySummary,
  writeTrace,
} from "./judging.ts";
export {
  assignLanes,
  closeSharedSessions,
  idleSharedSessions,
  type Lane,
  mapWithSessions,
  prestartSharedSessions,
  runQueue,
  type SessionUse,
} from "./lanes.ts";
export { judgeCode, type JudgeCommand } from "./judge_code.ts";
