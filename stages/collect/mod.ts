/** collect: serving traces replayed through the serving model, every kernel call recorded. */
export { CollectParams, collectStage } from "./stage.ts";
