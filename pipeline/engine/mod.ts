/**
 * The engine: a content-addressed DAG of cells. It keys every cell by what it depends on
 * (params, inputs, code, env, toolchain), keeps finished cells in the store, and re-runs only
 * what changed. It knows no FlashInfer format and no stage: stages come to it through the
 * registry (stages/mod.ts), each as a `Stage` (stage.ts, the contract).
 */
export { codeDigest, moduleGraph, pathDigest, treeDigest } from "./codegraph.ts";
export {
  type AnyStage,
  type CellFilter,
  keyDocument,
  type PipelineResult,
  runPipeline,
  selectStages,
  type StageReport,
  stageReport,
} from "./dag.ts";
export {
  exitCodeFor,
  type Interruption,
  interruptOnSignals,
  STOP_SIGNALS,
  superviseRun,
} from "./interrupt.ts";
export {
  blameParam,
  ParamError,
  type ParamSources,
  PipelineError,
  unknownParamKey,
} from "./params.ts";
export { atProcessExit, RUN_MARKER, startReaper } from "./reaper.ts";
export { type CellDiff, diffKeyDocuments, dryPlan, type StageStatus } from "./status.ts";
export { type Diagnostic, formatDiagnostic, fromZodError, jsonPath } from "./diagnostics.ts";
export { copyDirAtomic, type CopyDirOptions, writeFileAtomic } from "./files.ts";
export { canonicalJson, digestJson, digestParts, sha256, sha256File } from "./hash.ts";
export { DEFAULT_STORE, fromFileUrl, REPO_ROOT } from "./paths.ts";
export {
  type CellJob,
  type CellPlan,
  type CellResult,
  defineStage,
  type PipelineStage,
  type PlanContext,
  type PublishContext,
  type Resource,
  type Stage,
  type StagePolicy,
} from "./stage.ts";
export {
  describeHolder,
  type GcResult,
  importStore,
  type LockHolder,
  mergeRuns,
  type RunIndex,
  Store,
  StoreLockedError,
} from "./store.ts";
export {
  compileFacts,
  discoverToolchain,
  type Gpu,
  gpuArch,
  hardwareFacts,
  type Toolchain,
  tryRun,
} from "./toolchain.ts";
