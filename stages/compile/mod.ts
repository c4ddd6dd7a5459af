/** compile: every solution built for this machine's GPU. */
export { compileStage } from "./stage.ts";
