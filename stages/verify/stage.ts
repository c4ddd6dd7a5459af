/**
 * The `verify` stage: one cell per (solution, workload). The harness judges a definition's
 * solutions on its workloads in one process (candidates in their own worker processes), with
 * flashinfer-bench's rules and the extra rigor of PROTOCOL.md §5. A failure becomes the final
 * FlashInfer trace of that cell; a pass waits for `time` to add its performance. Without a GPU it
 * judges a CPU-sized selection of workloads (pipeline/harness/cpu_selection.ts).
 */
import { join } from "node:path";
import { z } from "zod";
import {
  checkWorkload,
  type RootedWorkload,
  runBlockers,
  type Solution,
  workloadDigest,
} from "../../pipeline/trace/mod.ts";
import {
  type CellJob,
  type CellPlan,
  type CellResult,
  defineStage,
  digestJson,
  hardwareFacts,
  type Toolchain,
  writeFileAtomic,
} from "../../pipeline/engine/mod.ts";
import {
  cellProgress,
  type CompileSummary,
  corpusWorkloadsFirst,
  cpuSelectionFields,
  cpuSelectionInForce,
  cpuSelectionLine,
  cpuSelectionNotRunnable,
  cpuSelectionReason,
  groupBy,
  type HarnessCell,
  hasGpu,
  judgeCode,
  type JudgedCell,
  mapWithSessions,
  mergeUpstream,
  notRunnableHere,
  prestartSharedSessions,
  runGroupJob,
  SelectionParams,
  selectSolutions,
  toEvaluation,
  verifyCost,
  type VerifySummary,
  workloadCost,
  writeTrace,
} from "../../pipeline/harness/mod.ts";

/** Params of the verify stage. */
export const VerifyParams = SelectionParams.extend({
  /**
   * Workloads per definition (0: all): those a corpus brought first, then the extracted ones in the
   * order extract ranked them.
   */
  max_workloads: z.number().int().nonnegative().default(8),
  /** Trials per workload, each with fresh inputs from seeds the candidate never sees. */
  num_trials: z.number().int().positive().default(3),
  rtol: z.number().positive().default(1e-2),
  atol: z.number().positive().default(1e-2),
  /** Per (solution, workload) wall-clock limit, in seconds. */
  timeout_s: z.number().positive().default(300),
  /**
   * Judging processes at once. Checking correctness does not need the GPU to itself, so several
   * definitions are judged side by side (timing, in `time`, never is).
   */
  parallel_processes: z.number().int().positive().default(4),
  ...cpuSelectionFields(3),
});
export type VerifyParams = z.infer<typeof VerifyParams>;

interface Payload extends JudgedCell {
  compile: CompileSummary;
  compileDir: string;
}

/**
 * The workloads a judging stage evaluates for a definition: the first `max` (all when 0) that can
 * be run, those that came with a corpus (fragment roots in `corpusRoots`) before the extracted ones,
 * so a corpus is judged on its own workloads. A workload whose axes, blobs or index tensors break
 * the definition (two official ones declare zero pages yet index pages) would fail every solution
 * alike; it is skipped and named in `skipped` instead of being blamed on them. What
 * flashinfer-bench tolerates (a missing input is drawn at random) does not skip it.
 */
export function workloadsFor(
  merged: ReturnType<typeof mergeUpstream>,
  def: string,
  max: number,
  skipped: string[] = [],
  corpusRoots: ReadonlySet<string> = new Set(),
  accept: (w: RootedWorkload) => boolean = () => true,
): RootedWorkload[] {
  const definition = merged.definitions.get(def);
  const out: RootedWorkload[] = [];
  for (const w of corpusWorkloadsFirst(merged.workloads.get(def) ?? [], corpusRoots)) {
    if (max > 0 && out.length >= max) break;
    if (!accept(w)) continue; // passed over unchecked: never judged here, so never blamed either
    const blocking = definition ? runBlockers(checkWorkload(definition, w.workload, w.root)) : [];
    if (blocking.length) skipped.push(`${def} ${w.workload.uuid}: ${blocking.join("; ")}`);
    else out.push(w);
  }
  return out;
}

/** The workloads verify judges for a definition, and those of the usual selection it leaves out here. */
export interface WorkloadChoice {
  judged: RootedWorkload[];
  /** Left out by the CPU-sized selection (none on a GPU), each with why. */
  leftOut: Array<{ workload: RootedWorkload; reason: string }>;
}

/**
 * The workloads of a definition verify judges: {@link workloadsFor}'s first `max_workloads`; without a GPU
 * (`cpu`), the first `cpu_max_workloads` of them (never more than `max_workloads`) whose estimated cost fits
 * `cpu_max_cost`, a costly workload giving its place to the next one that fits. The usual ones it leaves
 * out are returned with the reason, to be listed as not runnable here.
 */
export function chooseWorkloads(
  merged: ReturnType<typeof mergeUpstream>,
  def: string,
  p: VerifyParams,
  cpu: boolean,
  skipped: string[] = [],
  corpusRoots: ReadonlySet<string> = new Set(),
): WorkloadChoice {
  const usual = workloadsFor(merged, def, p.max_workloads, skipped, corpusRoots);
  const definition = merged.definitions.get(def);
  if (!cpu || !definition) return { judged: usual, leftOut: [] };
  const n = p.max_workloads > 0
    ? Math.min(p.max_workloads, p.cpu_max_workloads)
    : p.cpu_max_workloads;
  const judged = workloadsFor(
    merged,
    def,
    n,
    skipped,
    corpusRoots,
    (w) => workloadCost(definition, w.workload.axes) <= p.cpu_max_cost,
  );
  const leftOut = usual.filter((w) => !judged.includes(w)).map((w) => ({
    workload: w,
    reason: cpuSelectionReason(definition, w.workload.axes, p, judged.length) ??
      `cpu_max_workloads ${p.cpu_max_workloads} reached`,
  }));
  return { judged, leftOut };
}

/** The fragment roots of the corpus imports among the upstream `generate` cells (cell ids `corpus/…`). */
export function corpusRootsOf(upstream: Record<string, CellResult[]>): Set<string> {
  return new Set(
    (upstream.generate ?? []).filter((c) => c.id.startsWith("corpus/")).map((c) => c.dir),
  );
}

/** Why a solution's cells cannot run here (the solution, its toolchain or its compile cell), or null. */
function solutionNotRunnable(
  solution: Solution,
  comp: CellResult | undefined,
  tc: Toolchain,
): string | null {
  const notRunnable = notRunnableHere(solution, tc, "verify");
  if (notRunnable) return notRunnable;
  if (!comp) return "not compiled here (its compile cell did not run or failed)";
  const summary = comp.summary as CompileSummary | undefined;
  if (summary && ["toolchain_unavailable", "not_runnable_here"].includes(summary.outcome)) {
    return `compile: ${summary.outcome}: ${summary.reason ?? ""}`.trim();
  }
  return null;
}

/** The line that says a CPU-sized selection is in force, and what it leaves out. */
function describeCpuSelection(
  p: VerifyParams,
  leftOut: { cells: number; definitions: Set<string>; none: Set<string> },
): string {
  const none = [...leftOut.none].sort();
  return cpuSelectionLine(
    "verify",
    p,
    `${leftOut.cells} cells of ${leftOut.definitions.size} definitions not runnable here for it` +
      (none.length
        ? `, ${none.length} definitions with no workload in it (${none.join(", ")})`
        : ""),
  );
}

/** The stage. */
export const verifyStage = defineStage<VerifyParams>({
  name: "verify",
  description:
    "check every solution against the reference on real workloads, in isolated processes",
  policy: "hardware",
  params: VerifyParams,
  env: [],
  resource: "gpu",
  module: import.meta.url,
  codeFiles: judgeCode("verify"),
  toolchainFacts: hardwareFacts,
  prewarm(params, gpus) {
    // On a GPU machine the lanes' judges start while the pipeline probes its toolchain and plans. Without a
    // GPU nothing starts early: two lanes start quickly there, and CI's runs are often all cached.
    gpus.then((found) =>
      found.length > 0 ? prestartSharedSessions(params.parallel_processes, found) : undefined
    )
      .catch(() => {/* the stage starts its judges itself, and reports what fails */});
  },
  plan(ctx) {
    const merged = mergeUpstream(ctx.upstream, ["definitions", "extract", "generate"]);
    const compiled = new Map<string, CellResult>(
      (ctx.upstream.compile ?? []).map((c) => [c.id, c]),
    );
    const plans: CellPlan[] = [];
    const chosen = new Map<string, WorkloadChoice>();
    const corpusRoots = corpusRootsOf(ctx.upstream);
    const cpu = cpuSelectionInForce(ctx.toolchain, ctx.params);
    const skippedLogged = new Set<string>();
    const leftOut = { cells: 0, definitions: new Set<string>(), none: new Set<string>() };
    for (const { solution, definition } of selectSolutions(merged, ctx.params)) {
      const comp = compiled.get(`${definition.name}/${solution.name}`);
      const notRunnable = solutionNotRunnable(solution, comp, ctx.toolchain);
      if (!chosen.has(definition.name)) {
        const skipped: string[] = [];
        chosen.set(
          definition.name,
          chooseWorkloads(merged, definition.name, ctx.params, cpu, skipped, corpusRoots),
        );
        for (const s of skipped) {
          if (!skippedLogged.has(s)) ctx.log(`workload skipped, not judgeable: ${s}`);
          skippedLogged.add(s);
        }
      }
      const choice = chosen.get(definition.name)!;
      const cell = (w: RootedWorkload, reason: string | null): CellPlan => ({
        id: `${definition.name}/${solution.name}/${w.workload.uuid}`,
        params: {
          num_trials: ctx.params.num_trials,
          rtol: ctx.params.rtol,
          atol: ctx.params.atol,
          timeout_s: ctx.params.timeout_s,
        },
        inputs: {
          solution: digestJson(solution),
          definition: digestJson(definition),
          workload: workloadDigest(w),
          compile: comp?.digest ?? "none",
        },
        notRunnable: reason ?? undefined,
        payload: {
          solution,
          definition,
          workload: w,
          compile: comp?.summary as CompileSummary,
          compileDir: comp?.dir ?? "",
        } satisfies Payload,
      });
      for (const w of choice.judged) plans.push(cell(w, notRunnable));
      for (const { workload, reason } of choice.leftOut) {
        plans.push(cell(workload, notRunnable ?? cpuSelectionNotRunnable("verify", reason)));
        if (notRunnable) continue;
        leftOut.cells++;
        leftOut.definitions.add(definition.name);
        if (choice.judged.length === 0) leftOut.none.add(definition.name);
      }
    }
    if (cpu) ctx.log(describeCpuSelection(ctx.params, leftOut));
    else if (!hasGpu(ctx.toolchain)) ctx.log("no GPU here: judging every selected workload");
    return Promise.resolve(plans);
  },
  async runBatch(jobs, ctx, complete) {
    const finish = async (job: CellJob, cell: HarnessCell) => {
      const { solution, definition, workload } = job.plan.payload as Payload;
      writeFileAtomic(join(job.outDir, "verify.json"), JSON.stringify(cell, null, 2) + "\n");
      const ev = toEvaluation(cell, undefined, true);
      if (ev && ev.status !== "PASSED") {
        writeTrace(job.outDir, definition, solution, workload.workload, ev);
      }
      job.log(ev?.log ?? cell.reason ?? "");
      job.setSummary(
        {
          definition: definition.name,
          solution: solution.name,
          workload: workload.workload.uuid,
          outcome: cell.outcome,
          status: ev?.status ?? null,
          reason: cell.reason ?? null,
        } satisfies VerifySummary,
      );
      await complete(job);
    };

    // A solution that did not build fails every workload with its compiler message, no harness needed.
    const runnable: CellJob[] = [];
    for (const job of jobs) {
      const p = job.plan.payload as Payload;
      if (p.compile?.outcome !== "compile_error") {
        runnable.push(job);
        continue;
      }
      const compileCell = JSON.parse(
        Deno.readTextFileSync(join(p.compileDir, "compile.json")),
      ) as HarnessCell;
      await finish(job, {
        ...compileCell,
        workload: p.workload.workload.uuid,
        outcome: "evaluated",
      });
    }

    // One harness job per solution (its workloads share its worker), and per cell for a sampler, whose every
    // cell runs the TVD test: costly work spreads over the lanes instead of queueing in one.
    const groups = groupBy(runnable, (j) => {
      const p = j.plan.payload as Payload;
      const cell = p.definition.op_type === "sampling" ? p.workload.workload.uuid : "";
      return `${p.definition.name}\u0000${p.workload.root}\u0000${p.solution.name}\u0000${cell}`;
    });
    const parallel = hasGpu(ctx.toolchain)
      ? ctx.params.parallel_processes
      : Math.min(2, ctx.params.parallel_processes);
    // Costliest jobs first, over the lanes of every GPU: lanes that finish early then pick up the cheap
    // ones, instead of one lane working through a big job alone at the end.
    const order = [...groups.values()].sort((a, b) => verifyCost(b) - verifyCost(a));
    await mapWithSessions(order, parallel, async (group, session, lane) => {
      const run = await runGroupJob<Payload>(session, lane, "verify", group, {
        config: {
          num_trials: ctx.params.num_trials,
          rtol: ctx.params.rtol,
          atol: ctx.params.atol,
          timeout_s: ctx.params.timeout_s,
        },
      }, ctx.params.harness_timeout_s * 1000);
      for (const { job, cell } of run.cells) {
        if (cell) await finish(job, cell);
        else job.log("the harness returned no result for this cell");
      }
      ctx.log(
        `${run.cells[0].payload.definition.name}: ${
          run.solutions[0].name
        }: ${run.workloads.length} workloads in ${run.seconds.toFixed(1)}s${run.detail}`,
      );
    }, {
      claimsPrestarted: true,
      progress: cellProgress(ctx.log),
      gpus: ctx.toolchain.gpus,
      perGpu: true,
      signal: jobs[0]?.signal,
    });
  },
});
