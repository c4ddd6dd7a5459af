/**
 * The `compile` stage: one cell per solution, keyed on its sources and spec, the toolchain
 * fingerprint and the target architecture. The harness builds each definition's solutions in one
 * process (builds run in parallel inside it) and keeps build artifacts in its own machine-local
 * cache; the cell records the outcome, the time and the compiler's log.
 */
import { join } from "node:path";
import { z } from "zod";
import {
  type CellJob,
  type CellPlan,
  compileFacts,
  defineStage,
  digestJson,
} from "../../pipeline/engine/mod.ts";
import { type Definition, type Solution } from "../../pipeline/trace/mod.ts";
import { writeFileAtomic } from "../../pipeline/engine/mod.ts";
import {
  cellProgress,
  type CompileSummary,
  groupBy,
  HARNESS_WORK_DIR,
  hasGpu,
  judgeCode,
  mapWithSessions,
  mergeUpstream,
  notRunnableHere,
  SelectionParams,
  selectSolutions,
} from "../../pipeline/harness/mod.ts";

/** Params of the compile stage. */
export const CompileParams = SelectionParams.extend({
  /**
   * Harness processes building at once (each builds its definition's solutions in parallel), at
   * most one per core. A definition's builds take about a minute of one nvcc each, and most
   * definitions have 3-4 of them: two at a time left most of a 16-core GPU machine idle (cold
   * compile of the default profile 614 s, BENCHMARKS.md "Twelfth session").
   */
  parallel_definitions: z.number().int().positive().default(2),
  /** Per-solution build time limit, in seconds. */
  compile_timeout_s: z.number().positive().default(600),
  /** Builds at once inside one harness process (0: the harness decides from the cores). */
  parallel_builds: z.number().int().nonnegative().default(0),
});
export type CompileParams = z.infer<typeof CompileParams>;

interface Payload {
  solution: Solution;
  definition: Definition;
}

/** The stage. */
export const compileStage = defineStage<CompileParams>({
  name: "compile",
  description: "build every solution for this machine's GPU (or compile-check CUDA without one)",
  policy: "hardware",
  params: CompileParams,
  env: ["TORCH_CUDA_ARCH_LIST", "CUDA_HOME"],
  resource: "cpu",
  module: import.meta.url,
  codeFiles: judgeCode("compile"),
  toolchainFacts: compileFacts,
  plan(ctx) {
    const merged = mergeUpstream(ctx.upstream, ["definitions", "generate"]);
    const plans: CellPlan[] = selectSolutions(merged, ctx.params).map((
      { solution, definition },
    ) => ({
      id: `${definition.name}/${solution.name}`,
      params: { compile_timeout_s: ctx.params.compile_timeout_s },
      // The definition enters the key because the build checks the entry point's signature against it.
      inputs: { solution: digestJson(solution), definition: digestJson(definition) },
      notRunnable: notRunnableHere(solution, ctx.toolchain, "compile") ?? undefined,
      payload: { solution, definition } satisfies Payload,
    }));
    if (!hasGpu(ctx.toolchain)) {
      ctx.log(
        "no GPU here: building the Python solutions and compile-checking C++/CUDA sources; " +
          "verify and time judge a CPU-sized selection of workloads",
      );
    }
    return Promise.resolve(plans);
  },
  async runBatch(jobs, ctx, complete) {
    const groups = groupBy(jobs, (j) => (j.plan.payload as Payload).definition.name);
    await mapWithSessions(
      [...groups.values()],
      Math.max(1, Math.min(ctx.params.parallel_definitions, navigator.hardwareConcurrency || 1)),
      async (group: CellJob[], session) => {
        const { definition } = group[0].plan.payload as Payload;
        const result = await session.run("compile", {
          protocol: 1,
          device: "auto",
          work_dir: HARNESS_WORK_DIR,
          definition,
          solutions: group.map((j) => (j.plan.payload as Payload).solution),
          config: {
            compile_timeout_s: ctx.params.compile_timeout_s,
            ...(ctx.params.parallel_builds ? { parallel_builds: ctx.params.parallel_builds } : {}),
          },
        }, { timeoutMs: ctx.params.harness_timeout_s * 1000, signal: group[0].signal });
        if (!result.ok) throw new Error(`harness compile for ${definition.name}: ${result.error}`);
        for (const job of group) {
          const { solution } = job.plan.payload as Payload;
          const cell = result.results.find((r) => r.solution === solution.name);
          if (!cell) {
            job.log(`the harness returned no result for ${solution.name}`);
            continue;
          }
          writeFileAtomic(join(job.outDir, "compile.json"), JSON.stringify(cell, null, 2) + "\n");
          job.log(cell.log ?? "");
          job.setSummary(
            {
              solution: solution.name,
              definition: definition.name,
              outcome: cell.outcome as CompileSummary["outcome"],
              reason: cell.reason ?? null,
            } satisfies CompileSummary,
          );
          await complete(job);
        }
        const failed = result.results.filter((r) => r.outcome === "compile_error").length;
        ctx.log(
          `${definition.name}: ${group.length} solutions built or checked (${failed} compile errors)`,
        );
      },
      // Its lanes in all, spread over the run's GPUs: the builds share one build folder, and each GPU
      // then has a judge warmed up for verify.
      { progress: cellProgress(ctx.log), gpus: ctx.toolchain.gpus, signal: jobs[0]?.signal },
    );
  },
});
