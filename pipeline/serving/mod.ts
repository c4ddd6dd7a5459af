/**
 * The serving model: public request traces, model shapes, an SGLang-like engine's scheduling and
 * memory, and the simulation that replays a trace through them. collect records the simulated
 * kernel calls; extract replays the same run to capture the batches behind each workload.
 */
export { EngineConfig, EngineConfigError, kvCapacityPages } from "./engine.ts";
export { deriveShape, loadModelConfig, ModelConfigError, type ModelShape } from "./model.ts";
export {
  modelSlug,
  ModelSpec,
  resolvePath,
  resolveTrace,
  runSimulation,
  type SimConfig,
  TraceSpec,
} from "./run.ts";
export { type BatchEntry, type SimResult, simulate } from "./simulate.ts";
export {
  KNOWN_TRACES,
  loadTrace,
  parseAzureCsv,
  parseMooncakeJsonl,
  TraceError,
} from "./traces.ts";
