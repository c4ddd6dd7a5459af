/**
 * The FlashInfer Trace format: its zod schemas (field for field flashinfer-bench's), the TraceSet
 * layout read and written byte-stably, safetensors blobs, the one workload checker that
 * `validate`, `extract` and `verify` share, trace fragments of cells, and tracepipe's sweep index.
 * It knows nothing of stages; the engine's diagnostics and atomic writes are all it uses of it.
 */
export { checkConstraints, evaluate } from "./constraints.ts";
export { jsonSchemas } from "./export_schema.ts";
export {
  type MergedFragments,
  mergeFragments,
  type RootedWorkload,
  workloadDigest,
} from "./fragments.ts";
export {
  looksDraft,
  looksDraftTrace,
  type Upgrade,
  upgradeDefinition,
  upgradeSolution,
  upgradeTraceLine,
} from "./legacy.ts";
export { checkDefinitionsSyntax, checkSolutionsSyntax } from "./python_syntax.ts";
export {
  decodeSafetensors,
  encodeSafetensors,
  intTensor,
  type RawTensor,
  TRACE_TO_SAFETENSORS,
} from "./safetensors.ts";
export {
  BuildSpec,
  Definition,
  type DType,
  Evaluation,
  type EvaluationStatus,
  FLOATING_DTYPES,
  FloatOrSpecial,
  type InputSpec,
  isWorkloadTrace,
  Solution,
  solutionHash,
  STATUSES,
  Trace,
  type Workload,
} from "./schema.ts";
export {
  type ParamValue,
  readSweepIndex,
  SWEEP_INDEX_FILE,
  type SweepIndexEntry,
} from "./sweep_index.ts";
export {
  blobPath,
  definitionPath,
  emptyTraceSet,
  listFiles,
  loadTraceSet,
  parseDefinition,
  parseJsonl,
  parseJsonOrDiagnose,
  parseSolution,
  solutionPath,
  type TraceSet,
  tracesPath,
  workloadsPath,
} from "./traceset.ts";
export {
  formatDefinition,
  formatJsonl,
  formatSolution,
  formatTraceLine,
  writeTraceSet,
} from "./write.ts";
export { inferShape } from "./shape.ts";
export { checkSolutionSignature, type SignatureReport } from "./signature.ts";
export { decodeUtf8, readUtf8File, Utf8Error } from "./text.ts";
export { validatePath } from "./validate.ts";
export { blobPathEscapes } from "./confine.ts";
export {
  checkWorkload,
  runBlockers,
  splitProblems,
  type WorkloadCheck,
  type WorkloadProblem,
} from "./workload_check.ts";
export {
  CHARACTERIZATION_FILE,
  GridPoint,
  ManifestPoint,
  readManifestPoints,
  Sweep,
} from "./characterization.ts";
