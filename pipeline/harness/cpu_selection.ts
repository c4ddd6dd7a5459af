/**
 * The CPU-sized selection of verify and time. Without a GPU the harness runs the references and the
 * Python solutions on the CPU, where the large workloads the GPU judges in milliseconds take minutes
 * (a float32 attention reference over 14 000 KV tokens, a sampler's distribution test drawing
 * 500 000 samples per row over a 128K vocabulary). So on such a machine each judging stage judges at
 * most a few workloads per definition, those whose estimated cost fits a budget, and lists the
 * others as not runnable here, saying which param asks for everything. What is judged is judged in
 * full: no test is shortened, so a verdict means here what it means on a GPU.
 */
import { z } from "zod";
import { type Definition, inferShape, type Workload } from "../trace/mod.ts";
import type { Toolchain } from "../engine/mod.ts";

/**
 * Samples per row of the sampling evaluator's distribution test (flashinfer-bench's count; the
 * `sampling_samples_per_row` default of th_eval_sampling.py).
 */
const TVD_SAMPLES_PER_ROW = 500_000;
/** Rows the distribution test samples (the `sampling_tvd_rows` default of th_eval_sampling.py). */
const TVD_ROWS = 2;

/**
 * The params of the CPU-sized selection, for a judging stage's schema (`SelectionParams.extend`).
 * `maxWorkloads` is the stage's default number of workloads per definition on a CPU.
 */
export function cpuSelectionFields(maxWorkloads: number) {
  return {
    /**
     * Without a GPU, judge a CPU-sized selection: at most `cpu_max_workloads` workloads per
     * definition, each of estimated cost at most `cpu_max_cost`; the others are listed as not
     * runnable here. False judges everything (hours on a CPU). Ignored on a GPU machine.
     */
    cpu_selection: z.boolean().default(true),
    /** Workloads per definition in the CPU-sized selection. */
    cpu_max_workloads: z.number().int().positive().default(maxWorkloads),
    /** The largest estimated cost ({@link workloadCost}) the CPU-sized selection judges. */
    cpu_max_cost: z.number().positive().default(1e9),
  };
}

/** The CPU-sized selection's params, as a stage has read them. */
export interface CpuSelection {
  cpu_selection: boolean;
  cpu_max_workloads: number;
  cpu_max_cost: number;
}

/** Whether a stage judges the CPU-sized selection here: no GPU, and not turned off. */
export function cpuSelectionInForce(tc: Toolchain, p: CpuSelection): boolean {
  return tc.gpus.length === 0 && p.cpu_selection;
}

/** How to ask a stage for everything (the end of every line that names the selection). */
export function cpuSelectionEscape(stage: string): string {
  return `pass --set ${stage}.cpu_selection=false to judge everything`;
}

/**
 * The line a judging stage logs when the CPU-sized selection is in force: what it judges (verify) or
 * times (time, of the cells verify passed), within which bounds, what it leaves out (`leftOut`), and
 * how to ask for everything.
 */
export function cpuSelectionLine(
  stage: "verify" | "time",
  p: CpuSelection,
  leftOut: string,
): string {
  const what = stage === "time"
    ? "timing a CPU-sized selection (of the cells verify passed, "
    : "judging a CPU-sized selection (";
  return `no GPU here: ${what}at most ${p.cpu_max_workloads} workloads per definition, each of ` +
    `estimated cost at most ${formatCost(p.cpu_max_cost)}): ${leftOut}; ${
      cpuSelectionEscape(stage)
    }`;
}

/** The elements of one tensor of a definition on these axes (0 when an axis has no value). */
function elements(def: Definition, name: string, axes: Record<string, number>): number {
  try {
    return (inferShape(def, name, axes) ?? []).reduce((n, d) => n * d, 1);
  } catch {
    return 0; // an axis without a value: the workload checker reports it, not this estimate
  }
}

/** A constant axis of a definition, or a var axis of the workload, or null. */
function axis(def: Definition, axes: Record<string, number>, name: string): number | null {
  const a = def.axes[name];
  if (!a) return null;
  return a.type === "const" ? a.value : axes[name] ?? null;
}

/**
 * A workload's estimated cost on a CPU, in element operations, from its axes alone (no blob is
 * read): the elements of every input and output, plus what dominates where it is larger —
 * - attention: every query element against every KV token it may attend (query inputs `q`,
 *   `q_nope`, `q_pe`, … times `num_kv_indices` × `page_size`, or `total_kv`), an upper bound
 *   since a sequence attends only its own tokens;
 * - a sampler (`op_type` sampling, input `probs`): its distribution test, 500 000 draws per row
 *   over the vocabulary for up to 2 rows (none for an empty batch).
 * Matrix products are counted by their operands: on the CPU they run in bfloat16 through oneDNN,
 * orders of magnitude faster per element than the float32 loops of the attention references.
 */
export function workloadCost(def: Definition, axes: Record<string, number>): number {
  let cost = 0;
  for (const name of [...Object.keys(def.inputs), ...Object.keys(def.outputs)]) {
    cost += elements(def, name, axes);
  }
  const kvPages = axis(def, axes, "num_kv_indices");
  const kv = kvPages !== null ? kvPages * (axis(def, axes, "page_size") ?? 1) : axis(
    def,
    axes,
    "total_kv",
  );
  if (kv !== null) {
    const query = Object.keys(def.inputs).filter((n) => n === "q" || n.startsWith("q_"))
      .reduce((n, name) => n + elements(def, name, axes), 0);
    cost += query * kv;
  }
  if (def.op_type === "sampling" && def.inputs.probs) {
    const shape = (() => {
      try {
        return inferShape(def, "probs", axes) ?? [];
      } catch {
        return [];
      }
    })();
    if (shape.length === 2 && shape[0] > 0) {
      cost += TVD_SAMPLES_PER_ROW * shape[1] * Math.min(TVD_ROWS, shape[0]);
    }
  }
  return cost;
}

/** `2.3e9`-style: a cost in a log line. */
export function formatCost(n: number): string {
  return n.toExponential(1).replace("e+", "e");
}

/**
 * Why a workload is left out of the CPU-sized selection, or null when it fits: its estimated
 * cost is over the budget, or `taken` workloads of its definition are already chosen.
 */
export function cpuSelectionReason(
  def: Definition,
  axes: Record<string, number>,
  p: CpuSelection,
  taken: number,
): string | null {
  const cost = workloadCost(def, axes);
  if (cost > p.cpu_max_cost) {
    return `estimated cost ${formatCost(cost)} over cpu_max_cost ${formatCost(p.cpu_max_cost)}`;
  }
  if (taken >= p.cpu_max_workloads) return `cpu_max_workloads ${p.cpu_max_workloads} reached`;
  return null;
}

/** The not-runnable reason of a cell the CPU-sized selection leaves out. */
export function cpuSelectionNotRunnable(stage: string, why: string): string {
  return `CPU-sized selection: ${why} (${cpuSelectionEscape(stage)})`;
}

/**
 * A picker of the CPU-sized selection, definition by definition, in the order it is asked: the first
 * `cpu_max_workloads` workloads whose estimated cost fits `cpu_max_cost` are taken (null), each other
 * gets its not-runnable reason. Asking again about a workload taken takes it again.
 */
export function cpuSelectionPicker(
  stage: string,
  p: CpuSelection,
): (def: Definition, w: Workload) => string | null {
  const taken = new Map<string, string[]>();
  return (def, w) => {
    const uuids = taken.get(def.name) ?? [];
    if (uuids.includes(w.uuid)) return null;
    const why = cpuSelectionReason(def, w.axes, p, uuids.length);
    if (why) return cpuSelectionNotRunnable(stage, why);
    taken.set(def.name, [...uuids, w.uuid]);
    return null;
  };
}
