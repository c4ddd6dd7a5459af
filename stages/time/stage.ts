/**
 * The `time` stage: one cell per (solution, workload) that passed `verify`. The harness times the
 * candidate, the definition's reference and the op's baseline interleaved in one run (L2 flushed,
 * fresh inputs per call, statistics from raw samples). The cell writes the final PASSED trace,
 * with `speedup_factor` against the reference as the format defines it, and keeps the raw samples
 * and the speedup against the baseline in `timing.json`. Without a GPU it times a CPU-sized
 * selection of the cells verify passed (pipeline/harness/cpu_selection.ts).
 */
import { join } from "node:path";
import { z } from "zod";
import { type Solution, workloadDigest } from "../../pipeline/trace/mod.ts";
import {
  type CellJob,
  type CellPlan,
  defineStage,
  digestJson,
  hardwareFacts,
  writeFileAtomic,
} from "../../pipeline/engine/mod.ts";
import {
  cellProgress,
  cpuSelectionFields,
  cpuSelectionInForce,
  cpuSelectionLine,
  cpuSelectionPicker,
  groupBy,
  groupCost,
  type HarnessCell,
  hasGpu,
  judgeCode,
  type JudgedCell,
  laneGpus,
  LOCK_CLOCKS_ENV,
  lockClocks,
  mapWithSessions,
  mergeUpstream,
  notRunnableHere,
  runGroupJob,
  SelectionParams,
  toEvaluation,
  type VerifySummary,
  writeTrace,
} from "../../pipeline/harness/mod.ts";

/** Params of the time stage (the harness's timing protocol, PROTOCOL.md §1.1). */
export const TimeParams = SelectionParams.extend({
  rounds: z.number().int().positive().default(3),
  warmup_calls: z.number().int().nonnegative().default(10),
  min_samples: z.number().int().positive().default(30),
  max_samples: z.number().int().positive().default(1000),
  /** Per role (candidate, reference, baseline), summed over rounds. */
  max_seconds: z.number().positive().default(10),
  target_rel_stderr: z.number().positive().default(0.001),
  /**
   * Time the definition's reference beside each workload's first candidate: the FlashInfer Trace's
   * `speedup_factor` is against it. Off, no reference is timed and each trace's
   * `reference_latency_ms` and `speedup_factor` read 0 (the report's speedups are against the
   * baseline either way). The decode characterization turns it off: its reference is a Python loop
   * over sequences, and timing it was 255 of that time stage's 941 s on the H100 (docs/BENCHMARKS.md,
   * "Sixteenth session").
   */
  time_reference: z.boolean().default(true),
  input_sets: z.number().int().positive().default(8),
  /** Fewer input sets (never under 2) when `input_sets` of them would exceed this many bytes. */
  input_sets_max_bytes: z.number().int().nonnegative().default(256 * 1024 * 1024),
  /**
   * Wait for workers still creating their CUDA context before each measurement (the next candidate's
   * worker starts while the current one is timed). Off by default: on the H100, contexts created back
   * to back in another process did not move a measured median (docs/BENCHMARKS.md).
   */
  settle_workers: z.boolean().default(false),
  /**
   * The timing gate's hold, in microseconds (PROTOCOL.md §5): a kernel filling every SM holds the
   * judge's stream while the call is submitted, so at most this much of the host's submission time stays
   * out of each sample (the call's device time is measured, as flashinfer-bench's CUPTI timer does); 0
   * times without the gate, host submission latency included.
   */
  gate_hold_us: z.number().nonnegative().default(100),
  /**
   * The stopping rule's target for a round whose calls mostly outlast the gate's hold (more than half of
   * its samples so far): their time is host time, which moves between runs by more than a tighter
   * within-run precision would buy (docs/BENCHMARKS.md), so they stop here instead of at
   * `target_rel_stderr` (whichever is looser); 0 keeps `target_rel_stderr` for every round.
   */
  host_bound_rel_stderr: z.number().nonnegative().default(0.02),
  /**
   * Which baseline to time beside each candidate: the `baseline` author's runnable solution whose
   * name contains this (the paper's choice, FlashInfer; its wrappers are skipped where it is absent).
   */
  baseline_prefer: z.string().default("flashinfer"),
  /**
   * At most this many workloads per harness job. A job's cells come back when the job ends, so a run
   * stopped by a time limit keeps only whole jobs: the decode characterization's 68 workloads of one
   * definition in one job kept nothing after 97 s on the H100. Every solution of a workload stays in
   * one job (the reference and baseline are timed once per workload and shared). Scheduling only: it
   * enters no cell's key.
   */
  workloads_per_job: z.number().int().positive().default(8),
  ...cpuSelectionFields(3),
});
export type TimeParams = z.infer<typeof TimeParams>;

interface Payload extends JudgedCell {
  baseline: Solution | null;
  verifyDir: string;
}

/**
 * The baseline solution of a definition: author "baseline", runnable here, preferring names that
 * contain `prefer` (FlashInfer's wrappers when FlashInfer is installed, else the torch ones).
 */
export function pickBaseline(
  solutions: Iterable<Solution>,
  def: string,
  prefer: string,
  runnable: (s: Solution) => boolean = () => true,
): Solution | null {
  const cands = [...solutions].filter((s) =>
    s.definition === def && s.author === "baseline" && runnable(s)
  )
    .sort((a, b) => (a.name < b.name ? -1 : 1));
  return cands.find((s) => s.name.includes(prefer)) ?? cands[0] ?? null;
}

/**
 * The params the harness's timing reads (and a cell's key holds): the stage's params without those that
 * choose cells (the selection, the baseline's choice, the CPU-sized selection) or bound the harness.
 */
function timingParams(p: TimeParams) {
  const {
    authors: _a,
    languages: _l,
    definition_regex: _d,
    harness_timeout_s: _h,
    baseline_prefer: _b,
    workloads_per_job: _j,
    cpu_selection: _c,
    cpu_max_workloads: _w,
    cpu_max_cost: _m,
    ...timing
  } = p;
  return timing;
}

/** The stage. */
export const timeStage = defineStage<TimeParams>({
  name: "time",
  description: "time every verified solution beside the reference and the baseline",
  policy: "hardware",
  params: TimeParams,
  // `reproduce --lock-clocks`: absent (the default) it adds nothing to the key.
  env: [LOCK_CLOCKS_ENV],
  resource: "gpu",
  module: import.meta.url,
  codeFiles: judgeCode("time"),
  toolchainFacts: hardwareFacts,
  plan(ctx) {
    const merged = mergeUpstream(ctx.upstream, ["definitions", "extract", "generate"]);
    const plans: CellPlan[] = [];
    const re = ctx.params.definition_regex ? new RegExp(ctx.params.definition_regex) : null;
    // Without a GPU: the first `cpu_max_workloads` workloads of each definition that fit the budget.
    const cpu = cpuSelectionInForce(ctx.toolchain, ctx.params);
    const cpuChoice = cpuSelectionPicker("time", ctx.params);
    for (const v of ctx.upstream.verify ?? []) {
      const s = v.summary as VerifySummary | null;
      if (!s || s.status !== "PASSED") continue;
      const solution = merged.solutions.get(s.solution);
      const definition = merged.definitions.get(s.definition);
      const workload = (merged.workloads.get(s.definition) ?? []).find((w) =>
        w.workload.uuid === s.workload
      );
      if (!solution || !definition || !workload) continue;
      if (re && !re.test(definition.name)) continue;
      if (ctx.params.authors.length && !ctx.params.authors.includes(solution.author)) continue;
      if (ctx.params.languages.length && !ctx.params.languages.includes(solution.spec.language)) {
        continue;
      }
      const baseline = pickBaseline(
        merged.solutions.values(),
        definition.name,
        ctx.params.baseline_prefer,
        (b) => notRunnableHere(b, ctx.toolchain, "time") === null,
      );
      plans.push({
        id: v.id,
        params: timingParams(ctx.params),
        notRunnable: cpu ? cpuChoice(definition, workload.workload) ?? undefined : undefined,
        inputs: {
          verify: v.digest,
          workload: workloadDigest(workload),
          baseline: baseline ? digestJson(baseline) : "none",
        },
        payload: { solution, definition, workload, baseline, verifyDir: v.dir } satisfies Payload,
      });
    }
    if (cpu) {
      const left = plans.filter((p) => p.notRunnable).length;
      ctx.log(
        cpuSelectionLine(
          "time",
          ctx.params,
          `${left} of ${plans.length} cells not runnable here for it`,
        ),
      );
    }
    return Promise.resolve(plans);
  },
  async runBatch(jobs, ctx, complete) {
    const groups = groupBy(jobs, (j) => {
      const p = j.plan.payload as Payload;
      return `${p.definition.name}\u0000${p.workload.root}\u0000${p.baseline?.name ?? ""}`;
    });
    const chunks = [...groups.values()].flatMap((g) =>
      byWorkloads(g, ctx.params.workloads_per_job)
    );
    const timing = timingParams(ctx.params);
    const { harness_timeout_s } = ctx.params;
    // One timing process per GPU at a time. On one GPU, cheapest definitions first, so that a run cut
    // short by a time limit has timed as many definitions as it could; on several, costliest first,
    // so that no GPU is left alone with a big job at the end.
    const gpus = laneGpus(ctx.toolchain.gpus);
    const order = chunks.sort((a, b) => (groupCost(a) - groupCost(b)) * (gpus.length > 1 ? -1 : 1));
    // Opt-in: the clocks of the run's GPUs locked for the whole stage, reset at its end (or by the reaper).
    const lock = ctx.env[LOCK_CLOCKS_ENV] ? await lockClocks(gpus, { log: ctx.log }) : null;
    const clocks = lock?.state ?? null;
    await mapWithSessions(order, 1, async (group: CellJob[], session, lane) => {
      const baseline = (group[0].plan.payload as Payload).baseline;
      const run = await runGroupJob<Payload>(session, lane, "time", group, {
        ...(baseline ? { baseline } : {}),
        config: { timing },
      }, harness_timeout_s * 1000);
      const first = run.cells[0].payload;
      for (const { job, payload: p, cell } of run.cells) {
        if (!cell) {
          job.log("the harness returned no result for this cell");
          continue;
        }
        const verify = JSON.parse(
          Deno.readTextFileSync(join(p.verifyDir, "verify.json")),
        ) as HarnessCell;
        // Only under --lock-clocks: without it the cell's outputs are what they always were.
        const record = clocks ? { ...cell, clocks_lock: clocks } : cell;
        writeFileAtomic(join(job.outDir, "timing.json"), JSON.stringify(record, null, 2) + "\n");
        if (clocks) job.recordProvenance?.({ clocks });
        const ev = toEvaluation(verify, cell);
        if (ev) writeTrace(job.outDir, p.definition, p.solution, p.workload.workload, ev);
        const details = (cell.details ?? {}) as Record<string, unknown>;
        job.log(ev?.log ?? cell.reason ?? "");
        job.setSummary({
          definition: p.definition.name,
          solution: p.solution.name,
          workload: p.workload.workload.uuid,
          outcome: cell.outcome,
          status: ev?.status ?? null,
          latency_ms: ev?.performance?.latency_ms ?? null,
          speedup_vs_baseline: details.speedup_vs_baseline ?? null,
          baseline: p.baseline?.name ?? null,
        });
        await complete(job);
      }
      ctx.log(
        `${first.definition.name}: timed ${run.solutions.length} solutions x ${run.workloads.length} workloads in ${
          run.seconds.toFixed(1)
        }s${run.detail}${
          hasGpu(ctx.toolchain) ? "" : " (CPU timings: not comparable with GPU ones)"
        }`,
      );
    }, {
      alone: true,
      progress: cellProgress(ctx.log),
      gpus: ctx.toolchain.gpus,
      perGpu: true,
      signal: jobs[0]?.signal,
    }).finally(() => lock?.release());
  },
});

/**
 * Splits one definition's cells into jobs of at most `perJob` workloads, each workload's cells
 * (every solution timed on it) kept together, in first-seen order.
 */
export function byWorkloads(group: CellJob[], perJob: number): CellJob[][] {
  const byUuid = groupBy(group, (j) => (j.plan.payload as Payload).workload.workload.uuid);
  const workloads = [...byUuid.values()];
  const jobs: CellJob[][] = [];
  for (let i = 0; i < workloads.length; i += perJob) {
    jobs.push(workloads.slice(i, i + perJob).flat());
  }
  return jobs;
}
