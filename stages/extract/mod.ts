/** extract: the recorded calls turned into FlashInfer workloads with their blobs. */
export { extractStage } from "./stage.ts";
