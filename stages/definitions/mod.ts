/** definitions: the FlashInfer definitions the pipeline judges against. */
export { definitionsStage } from "./stage.ts";
