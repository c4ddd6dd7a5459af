/**
 * The `generate` stage: collects candidate solutions from three backends, one cell each per
 * corpus directory, per kernel manifest (parameter sweeps) and per LLM campaign
 * (definition × language × model). Every cell writes a self-contained TraceSet fragment
 * (the definitions its objects use, solutions/, and for a corpus its workloads and blobs) plus
 * `generate-report.json` with the diagnostics. See docs/generate.md.
 *
 * Planning lives in plan.ts, running in runners.ts; this module wires them into the stage.
 */
import type { z } from "zod";
import {
  type CellJob,
  defineStage,
  type PlanContext,
  type Stage,
} from "../../pipeline/engine/mod.ts";
import type { Evaluate } from "./llm/agent.ts";
import { GenerateParams } from "./params.ts";
import { type Payload, planCells } from "./plan.ts";
import { runCorpusCell, runLlmCell, runSweepCell } from "./runners.ts";
import { loadUpstream } from "./upstream.ts";

export { DEFAULT_CORPORA, GenerateParams } from "./params.ts";

/** Injectable dependencies, so tests can fake the evaluator and the environment. */
export interface GenerateDeps {
  evaluate?: Evaluate;
  env?: (name: string) => string | undefined;
}

/** Builds the stage with injectable dependencies; `generateStage` is the production instance. */
export function createGenerateStage(deps: GenerateDeps = {}): Stage<GenerateParams> {
  const env = deps.env ?? ((n: string) => Deno.env.get(n));
  return defineStage<GenerateParams>({
    name: "generate",
    description:
      "Collect candidate solutions: corpus imports, kernel parameter sweeps, LLM agent campaigns",
    policy: "pure",
    params: GenerateParams as unknown as z.ZodType<GenerateParams>,
    // The endpoint and key are deliberately not declared: they must never enter a cell key.
    env: [],
    resource: "cpu",
    module: import.meta.url,
    toolchainFacts: () => ({}),

    plan(ctx) {
      return Promise.resolve(planCells(ctx, loadUpstream(ctx), env));
    },

    async run(job: CellJob, ctx: PlanContext<GenerateParams>) {
      const payload = job.plan.payload as Payload;
      const up = loadUpstream(ctx);
      if (payload.backend === "corpus") return runCorpusCell(job, payload, up, ctx.log);
      if (payload.backend === "sweep") return runSweepCell(job, payload, up);
      await runLlmCell(job, ctx, payload, up, { evaluate: deps.evaluate, env });
    },
  });
}

/** The generate stage as the pipeline registers it. */
export const generateStage: Stage<GenerateParams> = createGenerateStage();
