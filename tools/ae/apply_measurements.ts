/**
 * Records a GPU measurement of apply() in a shipped run: reads the `apply_bench.json` that
 * `python/tests/gpu_bench_apply.py` writes into $OUT and sets `measurements.apply` of a run.json to
 * a compact summary of it, leaving every other field of the run.json as it was.
 *
 *   deno run -A tools/ae/apply_measurements.ts APPLY_BENCH_JSON RUN_JSON
 *
 * The summary (what the report's apply section and the claims read; `stages/aggregate/report_apply.ts`
 * holds the reader's schema):
 * - `e2e_overhead_pct`: the largest end-to-end overhead, in %, of patching the model with the
 *   fallback itself as the solution against the unpatched model, over the e2e rows (the paper's
 *   "apply overhead" column, claim paper.apply.overhead); null when no row measured it.
 * - `dispatch_overhead_ns`: host ns that apply() adds per call on a hit whose solution is the
 *   fallback, over the plain call; null when the dispatch section did not run.
 * - `tokens_identical`: every fallback-patched generation gave the unpatched model's greedy tokens.
 * - `additivity_max_dev_pct`: how far, at most, the end-to-end slowdown of a deliberately slower
 *   solution strays from the sum over calls of its per-call difference, in % of that sum (the
 *   issue's check that kernel differences carry through to end-to-end latency); null when unmeasured.
 * - `graph_overhead_pct`: the largest fallback overhead, in %, with the forward replayed as a CUDA
 *   graph (where the paper's Fig. 8 measured it: dispatch then happens at capture only).
 * - `graph_additivity_max_dev_pct`: as `additivity_max_dev_pct`, over the CUDA-graph rows (one
 *   forward replayed, so no host time blurs it); present where the file predicted them.
 * - `dispatch`: one row per case ({case, ns_per_call, overhead_ns}); rows, not a map, because case
 *   names hold dots ("F.linear, original") and the claims flatten run.json into dotted keys.
 * - `e2e`, `graphs`, `paged`: the script's rows, rounded, hits summed to calls and named by definition.
 * - `failed_sections`: sections the script reports as broken (their results are absent).
 * - `source`: the file, the device that measured and its torch.
 *
 * Bad input (either file) is one line naming the file, the field and the reason; exit code 1.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename } from "node:path";
import { z } from "zod";
import { writeFileAtomic } from "../../pipeline/engine/mod.ts";

/** The case whose overhead is the dispatch headline: a hit that runs the fallback itself. */
export const HIT_CASE = "apply, hit (solution = fallback)";

const num = z.number();
/** NaN and ±Infinity arrive as null (see {@link parseJsonWithNaN}). */
const maybeNum = num.nullable().optional();
const hits = z.record(z.string(), z.number().int().nonnegative()).optional();

/** One e2e row of apply_bench.json: a (dtype, batch) generation, three ways. */
const E2eRow = z.object({
  dtype: z.string(),
  batch: z.number().int().positive(),
  unpatched_ms: num.positive(),
  fallback_ms: maybeNum,
  project_ms: maybeNum,
  fallback_tokens_equal: maybeNum,
  project_tokens_equal: maybeNum,
  fallback_hits: hits,
  project_hits: hits,
  fallback_overhead_pct: maybeNum,
  fallback_error: z.string().optional(),
  project_error: z.string().optional(),
  // The deliberately slower solution (absent from files of before it, or with --skip slow).
  slow_ms: maybeNum,
  // Interleaved rounds (files of after the twelfth session): the slower solution's slowdown over the
  // fallback and the fallback's overhead taken round by round, with that overhead's spread.
  rounds: z.number().int().positive().optional(),
  slow_delta_ms: maybeNum,
  fallback_overhead_iqr_pct: maybeNum,
  // The project's Triton kernels as a variant of their own (files of after the twelfth session).
  triton_ms: maybeNum,
  triton_tokens_equal: maybeNum,
  triton_hits: hits,
  triton_error: z.string().optional(),
  slow_predicted_ms: maybeNum,
  slow_error: z.string().optional(),
}).passthrough().superRefine((r, ctx) => {
  // The script writes a row after both variants ran: each has a time or an error.
  for (const v of ["fallback", "project"] as const) {
    if (r[`${v}_ms`] == null && r[`${v}_error`] === undefined) {
      ctx.addIssue({
        code: "custom",
        path: [`${v}_ms`],
        message: `neither ${v}_ms nor ${v}_error`,
      });
    }
  }
});

/** One CUDA-graph row: median replay of a decode-shaped forward, four ways. */
const GraphRow = z.object({
  dtype: z.string(),
  batch: z.number().int().positive(),
  unpatched_ms: maybeNum,
  unpatched_error: z.string().optional(),
  fallback_ms: maybeNum,
  project_ms: maybeNum,
  slow_ms: maybeNum,
  fallback_argmax_equal: maybeNum,
  fallback_fallback_capture: z.number().int().nonnegative().optional(),
  fallback_overhead_pct: maybeNum,
  triton_ms: maybeNum,
  // The slower solution's slowdown over the fallback and its prediction (files of after the
  // fifteenth session).
  slow_delta_ms: maybeNum,
  slow_predicted_ms: maybeNum,
}).passthrough();

/** One paged-decoder row: the torch attention fallback against the project's paged kernels. */
const PagedRow = z.object({
  batch: z.number().int().positive(),
  torch_ms: num.positive(),
  project_ms: maybeNum,
  speedup: maybeNum,
  tokens_equal: maybeNum,
  hits,
  error: z.string().optional(),
}).passthrough();

/** What python/tests/gpu_bench_apply.py writes ($OUT/apply_bench.json). */
export const ApplyBench = z.object({
  device: z.string().min(1),
  torch: z.string(),
  dispatch: z.record(z.string(), z.object({ ns_per_call: num, overhead_ns: num })),
  e2e: z.array(E2eRow),
  // Absent from files of before the CUDA-graph section.
  graphs: z.array(GraphRow).default([]),
  paged: z.array(PagedRow),
  notes: z.array(z.unknown()).default([]),
  wall_s: maybeNum,
}).passthrough().refine(
  (b) => Object.keys(b.dispatch).length + b.e2e.length + b.graphs.length + b.paged.length > 0,
  { message: "no measurement: dispatch, e2e, graphs and paged are all empty" },
);
/** Parsed apply_bench.json. */
export type ApplyBench = z.infer<typeof ApplyBench>;

/** One e2e row of the summary. */
export interface ApplyE2eRow {
  dtype: string;
  batch: number;
  unpatched_ms: number;
  fallback_ms: number | null;
  /** 100 × (fallback_ms / unpatched_ms − 1); round by round where the rounds were interleaved. */
  fallback_overhead_pct: number | null;
  /** The interquartile range of that ratio over the rounds, in % (the measurement's own spread). */
  fallback_overhead_iqr_pct?: number | null;
  /** Interleaved rounds each variant was timed in (absent: blocks of 3, before the twelfth session). */
  rounds?: number;
  project_ms: number | null;
  /** unpatched_ms / project_ms. */
  project_speedup: number | null;
  /** Share of greedy tokens equal to the unpatched model's (1: all). */
  fallback_tokens_equal: number | null;
  project_tokens_equal: number | null;
  /** Calls substituted (summed over definitions). */
  fallback_hits: number;
  project_hits: number;
  /** The definitions the project's kernels served (hit at least once). */
  project_definitions: string[];
  /** The same for the project's Triton kernels (present where the file measured them). */
  triton_ms?: number | null;
  /** unpatched_ms / triton_ms. */
  triton_speedup?: number | null;
  triton_tokens_equal?: number | null;
  triton_definitions?: string[];
  triton_error?: string;
  fallback_error?: string;
  project_error?: string;
  /** The deliberately slower solution's slowdown over the fallback, measured end to end (ms). */
  slow_delta_ms: number | null;
  /** The same predicted: the sum over calls of its per-call difference (ms). */
  slow_predicted_ms: number | null;
  /** slow_delta_ms / slow_predicted_ms (1: the per-call differences add up exactly). */
  slow_vs_predicted: number | null;
  slow_error?: string;
}

/** One CUDA-graph row of the summary (ms per replay of one decode-shaped forward). */
export interface ApplyGraphRow {
  dtype: string;
  batch: number;
  unpatched_ms: number | null;
  fallback_ms: number | null;
  /** 100 × (fallback_ms / unpatched_ms − 1). */
  fallback_overhead_pct: number | null;
  project_ms: number | null;
  /** The project's Triton kernels (present where the file measured them). */
  triton_ms?: number | null;
  slow_ms: number | null;
  /** The slower solution's slowdown over the fallback, its prediction and their ratio (where predicted). */
  slow_delta_ms?: number | null;
  slow_predicted_ms?: number | null;
  slow_vs_predicted?: number | null;
  /** Share of rows whose next-token argmax equals the unpatched graph's, fallback-patched. */
  fallback_argmax_equal: number | null;
  /** Calls that ran the fallback because they were captured before their solution was loaded. */
  fallback_in_capture: number | null;
  /** Variants that failed, with their errors. */
  errors: string[];
}

/** One paged-decoder row of the summary. */
export interface ApplyPagedRow {
  batch: number;
  torch_ms: number;
  project_ms: number | null;
  speedup: number | null;
  tokens_equal: number | null;
  hits: number;
  error?: string;
}

/** What `measurements.apply` of a run.json holds. */
export interface ApplySummary {
  e2e_overhead_pct: number | null;
  dispatch_overhead_ns: number | null;
  tokens_identical: boolean | null;
  /** The farthest slow_vs_predicted of the e2e rows from 1, in % (null: none measured). */
  additivity_max_dev_pct: number | null;
  /** The largest fallback overhead under CUDA graphs, in % (null: none measured). */
  graph_overhead_pct: number | null;
  /** The farthest slow_vs_predicted of the graph rows from 1, in % (absent: none predicted). */
  graph_additivity_max_dev_pct?: number | null;
  dispatch: { case: string; ns_per_call: number; overhead_ns: number }[];
  e2e: ApplyE2eRow[];
  graphs: ApplyGraphRow[];
  paged: ApplyPagedRow[];
  failed_sections: string[];
  source: { file: string; device: string; torch: string; script: string };
}

/** Bad input: one line naming the file, the field and the reason. */
export class ApplyInputError extends Error {}

/**
 * JSON.parse that reads Python's `NaN`, `Infinity` and `-Infinity` (json.dump writes them for a
 * variant that failed) as null; strings are left alone, so an error message may say "NaN".
 */
export function parseJsonWithNaN(text: string): unknown {
  return JSON.parse(
    text.replace(/"(?:[^"\\]|\\.)*"|-?\bInfinity\b|\bNaN\b/g, (m) => m[0] === '"' ? m : "null"),
  );
}

/** `$.e2e[0].batch` from a zod issue path. */
function jsonPath(path: PropertyKey[]): string {
  return "$" + path.map((p) => typeof p === "number" ? `[${p}]` : `.${String(p)}`).join("");
}

/** Reads and validates apply_bench.json; `shown` names it in messages. */
export function readApplyBench(file: string, shown = file): ApplyBench {
  if (!existsSync(file)) throw new ApplyInputError(`${shown}: $: no such file`);
  let raw: unknown;
  try {
    raw = parseJsonWithNaN(readFileSync(file, "utf8"));
  } catch (e) {
    throw new ApplyInputError(`${shown}: $: ${(e as Error).message}`);
  }
  const r = ApplyBench.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new ApplyInputError(`${shown}: ${jsonPath(i.path)}: ${i.message}`);
  }
  return r.data;
}

const round = (v: number | null | undefined, digits: number): number | null =>
  v == null || !Number.isFinite(v) ? null : Number(v.toFixed(digits));
const sum = (h: Record<string, number> | undefined) =>
  Object.values(h ?? {}).reduce((a, b) => a + b, 0);

/** The values that were measured (null: not measured). */
const measured = (values: (number | null)[]) => values.filter((v): v is number => v !== null);
/** The largest measured value; null when none was measured. */
const maxMeasured = (values: (number | null)[]) => {
  const v = measured(values);
  return v.length ? Math.max(...v) : null;
};

/** The Triton variant's fields of a summary row, where the file measured it (else none). */
function tritonFields(r: z.infer<typeof E2eRow>) {
  if (r.triton_ms === undefined && r.triton_error === undefined) return {};
  return {
    triton_ms: round(r.triton_ms, 2),
    triton_speedup: r.triton_ms ? round(r.unpatched_ms / r.triton_ms, 3) : null,
    triton_tokens_equal: round(r.triton_tokens_equal, 4),
    triton_definitions: Object.keys(r.triton_hits ?? {}).sort(),
    ...(r.triton_error ? { triton_error: r.triton_error.slice(0, 300) } : {}),
  };
}

/**
 * The slower solution's fields of a summary row (an e2e or a CUDA-graph one): measured slowdown,
 * predicted, their ratio; times to `digits` decimals of a millisecond.
 */
function slowFields(
  r: Pick<
    z.infer<typeof E2eRow>,
    "slow_delta_ms" | "slow_ms" | "fallback_ms" | "slow_predicted_ms" | "slow_error"
  >,
  digits = 2,
) {
  // Round by round where the rounds were interleaved; else the difference of the two medians.
  const delta = r.slow_delta_ms ??
    (r.slow_ms != null && r.fallback_ms != null ? r.slow_ms - r.fallback_ms : null);
  const predicted = r.slow_predicted_ms ?? null;
  return {
    slow_delta_ms: round(delta, digits),
    slow_predicted_ms: round(predicted, digits),
    slow_vs_predicted: delta !== null && predicted ? round(delta / predicted, 3) : null,
    ...(r.slow_error ? { slow_error: r.slow_error.slice(0, 300) } : {}),
  };
}

/** The compact summary of one measurement (see the module doc for each field). */
export function summarizeApplyBench(b: ApplyBench, file: string): ApplySummary {
  const e2e: ApplyE2eRow[] = b.e2e.map((r) => ({
    dtype: r.dtype.replace(/^torch\./, ""),
    batch: r.batch,
    unpatched_ms: round(r.unpatched_ms, 2)!,
    fallback_ms: round(r.fallback_ms, 2),
    // Three decimals: the claim compares this with 0.8, and two could round across it.
    fallback_overhead_pct: round(r.fallback_overhead_pct, 3),
    ...(r.rounds
      ? {
        rounds: r.rounds,
        fallback_overhead_iqr_pct: round(r.fallback_overhead_iqr_pct, 3),
      }
      : {}),
    project_ms: round(r.project_ms, 2),
    project_speedup: r.project_ms ? round(r.unpatched_ms / r.project_ms, 3) : null,
    fallback_tokens_equal: round(r.fallback_tokens_equal, 4),
    project_tokens_equal: round(r.project_tokens_equal, 4),
    fallback_hits: sum(r.fallback_hits),
    project_hits: sum(r.project_hits),
    project_definitions: Object.keys(r.project_hits ?? {}).sort(),
    ...(r.fallback_error ? { fallback_error: r.fallback_error.slice(0, 300) } : {}),
    ...(r.project_error ? { project_error: r.project_error.slice(0, 300) } : {}),
    ...tritonFields(r),
    ...slowFields(r),
  }));
  const tokens = measured(e2e.map((r) => r.fallback_tokens_equal));
  const failed = b.notes.flatMap((n) =>
    n !== null && typeof n === "object" && "section" in n && "error" in n
      ? [String((n as { section: unknown }).section)]
      : []
  );
  const graphs: ApplyGraphRow[] = b.graphs.map((r) => ({
    dtype: r.dtype.replace(/^torch\./, ""),
    batch: r.batch,
    unpatched_ms: round(r.unpatched_ms, 4),
    fallback_ms: round(r.fallback_ms, 4),
    fallback_overhead_pct: round(r.fallback_overhead_pct, 3),
    project_ms: round(r.project_ms, 4),
    ...(r.triton_ms !== undefined ? { triton_ms: round(r.triton_ms, 4) } : {}),
    slow_ms: round(r.slow_ms, 4),
    // graph rows keep 4 decimals: a replayed forward is a millisecond or two
    ...(r.slow_predicted_ms !== undefined ? slowFields(r, 4) : {}),
    fallback_argmax_equal: round(r.fallback_argmax_equal, 4),
    fallback_in_capture: r.fallback_fallback_capture ?? null,
    errors: Object.entries(r).filter(([k, v]) => k.endsWith("_error") && typeof v === "string")
      .map(([k, v]) => `${k.replace(/_error$/, "")}: ${String(v).slice(0, 300)}`),
  }));
  const deviationPct = (ratios: (number | null | undefined)[]) => {
    const d = maxMeasured(measured(ratios.map((q) => q ?? null)).map((q) => Math.abs(q - 1)));
    return d === null ? null : round(d * 100, 1);
  };
  return {
    e2e_overhead_pct: maxMeasured(e2e.map((r) => r.fallback_overhead_pct)),
    dispatch_overhead_ns: round(b.dispatch[HIT_CASE]?.overhead_ns, 1),
    tokens_identical: tokens.length ? tokens.every((t) => t === 1) : null,
    additivity_max_dev_pct: deviationPct(e2e.map((r) => r.slow_vs_predicted)),
    graph_overhead_pct: maxMeasured(graphs.map((r) => r.fallback_overhead_pct)),
    ...(graphs.some((r) => r.slow_predicted_ms !== undefined)
      ? { graph_additivity_max_dev_pct: deviationPct(graphs.map((r) => r.slow_vs_predicted)) }
      : {}),
    dispatch: Object.entries(b.dispatch).map(([k, v]) => ({
      case: k,
      ns_per_call: round(v.ns_per_call, 1)!,
      overhead_ns: round(v.overhead_ns, 1)!,
    })),
    e2e,
    graphs,
    paged: b.paged.map((r) => ({
      batch: r.batch,
      torch_ms: round(r.torch_ms, 2)!,
      project_ms: round(r.project_ms, 2),
      speedup: round(r.speedup, 3),
      tokens_equal: round(r.tokens_equal, 4),
      hits: sum(r.hits),
      ...(r.error ? { error: r.error.slice(0, 300) } : {}),
    })),
    failed_sections: failed,
    source: {
      file: basename(file),
      device: b.device,
      torch: b.torch,
      script: "python/tests/gpu_bench_apply.py",
    },
  };
}

/**
 * Sets `measurements.apply` of `runJson` to the summary of `benchFile` (replacing an earlier one),
 * written atomically; every other field keeps its value and its place.
 */
export function recordApplyMeasurements(benchFile: string, runJson: string): ApplySummary {
  const summary = summarizeApplyBench(readApplyBench(benchFile), benchFile);
  if (!existsSync(runJson)) throw new ApplyInputError(`${runJson}: $: no such file`);
  let run: unknown;
  try {
    run = JSON.parse(readFileSync(runJson, "utf8"));
  } catch (e) {
    throw new ApplyInputError(`${runJson}: $: ${(e as Error).message}`);
  }
  if (run === null || typeof run !== "object" || Array.isArray(run)) {
    throw new ApplyInputError(`${runJson}: $: a run.json is a JSON object`);
  }
  const meta = run as Record<string, unknown>;
  const m = meta.measurements ?? {};
  if (m === null || typeof m !== "object" || Array.isArray(m)) {
    throw new ApplyInputError(`${runJson}: $.measurements: an object is required`);
  }
  meta.measurements = { ...m, apply: summary };
  writeFileAtomic(runJson, JSON.stringify(meta, null, 2) + "\n");
  return summary;
}

/** The one line the CLI prints after writing. */
export function summaryLine(runJson: string, s: ApplySummary): string {
  const v = (x: number | null, unit: string) => x === null ? "not measured" : `${x} ${unit}`;
  return `${runJson}: measurements.apply written from ${s.source.file} (${s.source.device}): ` +
    `dispatch +${v(s.dispatch_overhead_ns, "ns")} per call, e2e overhead at most ${
      v(s.e2e_overhead_pct, "%")
    }, tokens identical: ${
      s.tokens_identical === null ? "not measured" : s.tokens_identical ? "yes" : "no"
    }${
      s.additivity_max_dev_pct === null
        ? ""
        : `, a slower solution's slowdown within ${s.additivity_max_dev_pct} % of the sum of its per-call differences`
    }${s.failed_sections.length ? `; sections that failed: ${s.failed_sections.join(", ")}` : ""}`;
}

/** The CLI: 0 written, 1 bad input, 2 usage. */
export function main(args: string[]): number {
  if (args.length !== 2 || args.some((a) => a.startsWith("-"))) {
    console.error("usage: apply_measurements.ts APPLY_BENCH_JSON RUN_JSON");
    return 2;
  }
  try {
    console.log(summaryLine(args[1], recordApplyMeasurements(args[0], args[1])));
    return 0;
  } catch (e) {
    if (e instanceof ApplyInputError) {
      console.error(`error: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(main(Deno.args));
