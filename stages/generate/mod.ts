/** generate: candidate solutions from corpora, kernel sweeps and LLM agent campaigns. */
export { generateStage } from "./stage.ts";
