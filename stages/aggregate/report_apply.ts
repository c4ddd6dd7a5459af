/**
 * The report's apply() section: for each run whose run.json records `measurements.apply` (written
 * by tools/ae/apply_measurements.ts from python/tests/gpu_bench_apply.py's apply_bench.json), the
 * dispatch cost per call, the end-to-end cost of patching a model, and the paged decoder, each run
 * on its own (no table mixes machines), beside the paper's §6 / Fig. 8 numbers.
 */
import { z } from "zod";
import { RunFolderError } from "./runs.ts";
import { html, type Table, toHtml } from "./tables.ts";

/**
 * The paper's apply() numbers, as data/paper-figures.json records them (apply_end_to_end.derived:
 * dispatch_cost and apply_fallback_overhead_percent); a test keeps the two equal.
 */
export const PAPER_APPLY = {
  dispatchPerCallUs: "1-2",
  e2eOverheadMaxPct: 0.8,
  /** Fig. 8: the fallback substituted through apply() against apply disabled, by batch. */
  fallbackOverheadPct: { "1": 0.43, "16": 0.79, "64": 0.11 } as Record<string, number>,
};

/** The dispatch case whose overhead is the headline (a hit whose solution is the fallback). */
const HIT_CASE = "apply, hit (solution = fallback)";

const num = z.number().nullable().default(null);
const err = z.string().optional();
/** A field that files of before it lack (absent stays absent: the tables add its column only when present). */
const later = z.number().nullable().optional();

/** What `measurements.apply` of a run.json holds (tools/ae/apply_measurements.ts documents it). */
export const ApplyMeasurements = z.object({
  e2e_overhead_pct: num,
  dispatch_overhead_ns: num,
  tokens_identical: z.boolean().nullable().default(null),
  additivity_max_dev_pct: num,
  graph_overhead_pct: num,
  graph_additivity_max_dev_pct: later,
  dispatch: z.array(
    z.object({ case: z.string(), ns_per_call: z.number(), overhead_ns: z.number() }),
  ).default([]),
  e2e: z.array(
    z.object({
      dtype: z.string(),
      batch: z.number(),
      unpatched_ms: z.number(),
      fallback_ms: num,
      fallback_overhead_pct: num,
      project_ms: num,
      project_speedup: num,
      fallback_tokens_equal: num,
      project_tokens_equal: num,
      project_definitions: z.array(z.string()).default([]),
      fallback_error: err,
      project_error: err,
      rounds: z.number().optional(),
      fallback_overhead_iqr_pct: later,
      triton_ms: later,
      triton_speedup: later,
      triton_tokens_equal: later,
      triton_definitions: z.array(z.string()).optional(),
      triton_error: err,
      slow_delta_ms: num,
      slow_predicted_ms: num,
      slow_vs_predicted: num,
      slow_error: err,
    }).passthrough(),
  ).default([]),
  graphs: z.array(
    z.object({
      dtype: z.string(),
      batch: z.number(),
      unpatched_ms: num,
      fallback_ms: num,
      fallback_overhead_pct: num,
      project_ms: num,
      triton_ms: later,
      slow_ms: num,
      slow_delta_ms: later,
      slow_predicted_ms: later,
      slow_vs_predicted: later,
      fallback_argmax_equal: num,
      fallback_in_capture: num,
      errors: z.array(z.string()).default([]),
    }).passthrough(),
  ).default([]),
  paged: z.array(
    z.object({
      batch: z.number(),
      torch_ms: z.number(),
      project_ms: num,
      speedup: num,
      tokens_equal: num,
      hits: z.number().optional(),
      error: err,
    }).passthrough(),
  ).default([]),
  failed_sections: z.array(z.string()).default([]),
  source: z.object({ file: z.string(), device: z.string(), torch: z.string().optional() })
    .passthrough().optional(),
}).passthrough();
/** Parsed `measurements.apply`. */
export type ApplyMeasurements = z.infer<typeof ApplyMeasurements>;

/** A run as this section needs it: its id and its run.json `measurements`. */
export interface ApplyRun {
  id: string;
  gpu: string | null;
  measurements?: Record<string, unknown>;
}

/** The run's `measurements.apply`, null when absent; malformed: RunFolderError naming the field. */
export function applyOf(run: ApplyRun): ApplyMeasurements | null {
  const raw = run.measurements?.apply;
  if (raw === undefined) return null;
  const r = ApplyMeasurements.safeParse(raw);
  if (r.success) return r.data;
  const i = r.error.issues[0];
  const path = i.path.map((p) => typeof p === "number" ? `[${p}]` : `.${String(p)}`).join("");
  throw new RunFolderError(
    `results/${run.id}/run.json: $.measurements.apply${path}: ${i.message}`,
  );
}

/** A number for prose: at most `digits` decimals, no trailing zeros. */
const fmt = (v: number, digits = 2) => String(Number(v.toFixed(digits)));

/** "1.2×" or "1.1–1.4×" over the values given; null when there are none. */
function range(values: (number | null)[], digits = 2): string | null {
  const v = values.filter((x): x is number => x !== null);
  if (!v.length) return null;
  const [lo, hi] = [Math.min(...v), Math.max(...v)];
  return lo === hi ? `${fmt(lo, digits)}×` : `${fmt(lo, digits)}–${fmt(hi, digits)}×`;
}

/** The one generated sentence of findings for a run's measurement. */
export function applyFindings(a: ApplyMeasurements): string {
  const parts: string[] = [];
  if (a.dispatch_overhead_ns !== null) {
    parts.push(
      `dispatch adds ${fmt(a.dispatch_overhead_ns, 0)} ns per call on a hit ` +
        `(${fmt(a.dispatch_overhead_ns / 1000, 3)} µs; paper: ${PAPER_APPLY.dispatchPerCallUs} µs)`,
    );
  }
  if (a.e2e_overhead_pct !== null) {
    const rows = a.e2e.filter((r) => r.fallback_overhead_pct !== null).length;
    const tokens = a.tokens_identical === null
      ? ""
      : a.tokens_identical
      ? ", with the unpatched model's greedy tokens"
      : ", but its greedy tokens differ from the unpatched model's";
    parts.push(
      `patching the model with the fallback costs at most ${fmt(a.e2e_overhead_pct, 2)} % ` +
        `end to end in eager generation${
          rows ? ` over ${rows} (dtype, batch) run${rows === 1 ? "" : "s"}` : ""
        }${tokens}`,
    );
  }
  if (a.graph_overhead_pct !== null) {
    const captured = a.graphs.reduce((n, r) => n + (r.fallback_in_capture ?? 0), 0);
    parts.push(
      `replayed as a CUDA graph, where dispatch happens at capture only, the fallback-patched ` +
        `forward costs at most ${fmt(a.graph_overhead_pct, 2)} % more than the unpatched one ` +
        `(the paper's Fig. 8 setting: < ${fmt(PAPER_APPLY.e2eOverheadMaxPct)} %, ${
          a.graph_overhead_pct < PAPER_APPLY.e2eOverheadMaxPct ? "reproduced" : "not reproduced"
        })${
          captured
            ? ` (${captured} calls captured before their solution was loaded ran the fallback)`
            : ""
        }`,
    );
  }
  if (a.graph_additivity_max_dev_pct != null) {
    parts.push(
      `replayed as CUDA graphs, a deliberately slower solution slows the forward by within ${
        fmt(a.graph_additivity_max_dev_pct, 1)
      } % of the sum over its calls of its per-call difference (the figure that decides whether ` +
        `kernel differences carry through to end-to-end latency: replay adds no host time)`,
    );
  }
  if (a.additivity_max_dev_pct !== null) {
    parts.push(
      `a deliberately slower solution's end-to-end slowdown is within ${
        fmt(a.additivity_max_dev_pct, 1)
      } % of the sum over calls of its per-call difference (kernel differences carry through to ` +
        `end-to-end latency, as in the paper's Fig. 8)`,
    );
  }
  const project = range(a.e2e.map((r) => r.project_speedup));
  if (project) parts.push(`the project's kernels run the model ${project} as fast as unpatched`);
  const paged = range(a.paged.map((r) => r.speedup));
  if (paged) {
    parts.push(`the paged decoder runs ${paged} as fast on the project's attention kernels`);
  }
  if (a.failed_sections.length) {
    const n = a.failed_sections.length;
    parts.push(
      `the section${n === 1 ? "" : "s"} ${a.failed_sections.join(", ")} stopped with an error ` +
        `(${n === 1 ? "its" : "their"} rows may be partial)`,
    );
  }
  if (!parts.length) return "Nothing was measured.";
  const s = parts.join("; ");
  return s[0].toUpperCase() + s.slice(1) + ".";
}

/** The definition families of a list of definition names (gemm_n4096_k4096 → gemm). */
const families = (defs: string[]) => [...new Set(defs.map((d) => d.split("_")[0]))].sort();

/** The tables of one run's measurement (dispatch, end to end, CUDA graphs, paged decoder). */
export function applyTables(runId: string, a: ApplyMeasurements): Table[] {
  const tables: Table[] = [];
  if (a.dispatch.length) {
    tables.push({
      id: `apply_dispatch_${runId}`,
      title: "Dispatch cost per call",
      caption:
        `Host ns per call (best of 7 × 20000 calls) and the overhead over the plain call (F.linear rows: over the original F.linear). The paper gives apply() ${PAPER_APPLY.dispatchPerCallUs} µs per call (§6).`,
      columns: ["case", "ns/call", "overhead ns", "paper"],
      rows: a.dispatch.map((d) => ({
        case: d.case,
        "ns/call": d.ns_per_call,
        "overhead ns": d.overhead_ns,
        paper: d.case === HIT_CASE ? `${PAPER_APPLY.dispatchPerCallUs} µs` : null,
      })),
    });
  }
  if (a.e2e.length) {
    const errors = a.e2e.some((r) =>
      r.fallback_error || r.project_error || r.triton_error || r.slow_error
    );
    const triton = a.e2e.some((r) => r.triton_ms !== undefined || r.triton_error);
    const rounds = a.e2e.find((r) => r.rounds)?.rounds;
    const slow = a.e2e.some((r) => r.slow_delta_ms !== null || r.slow_error);
    tables.push({
      id: `apply_e2e_${runId}`,
      title:
        "End to end: a Hugging Face Llama, unpatched, patched with the fallback, patched with the project's kernels",
      caption: `Greedy generation (ms, ${
        rounds
          ? `median of ${rounds} rounds, the variants interleaved round by round; overhead % and the slower solution's slowdown taken round by round`
          : "median of 3"
      }) of the Llama-3.1-8B-dimensioned model of python/tests/gpu_bench_apply.py (random weights, eager). overhead %: fallback against unpatched, the paper's "apply overhead"; its claim is < ${PAPER_APPLY.e2eOverheadMaxPct} % (Fig. 8 measured it in SGLang with CUDA graphs, one kernel substituted; here every RMSNorm and linear layer goes through apply()). project speedup: unpatched / project${
        triton ? " (CUDA kernels); triton: the same with the project's Triton kernels" : ""
      }. tokens equal: share of greedy tokens equal to the unpatched model's, fallback / project${
        triton ? " / triton" : ""
      }.${
        slow
          ? " slower: a solution computing each gemm several times, its slowdown over the fallback measured end to end / predicted as the sum over calls of its per-call difference (ms)."
          : ""
      }`,
      columns: [
        "dtype",
        "batch",
        "unpatched ms",
        "fallback ms",
        "overhead %",
        "paper overhead %",
        "project ms",
        "project speedup",
        ...(triton ? ["triton ms", "triton speedup"] : []),
        "tokens equal",
        "project kernels",
        ...(slow ? ["slower: measured / predicted ms"] : []),
        ...(errors ? ["error"] : []),
      ],
      rows: a.e2e.map((r) => ({
        dtype: r.dtype,
        batch: r.batch,
        "unpatched ms": r.unpatched_ms,
        "fallback ms": r.fallback_ms,
        "overhead %": r.fallback_overhead_pct,
        "paper overhead %": PAPER_APPLY.fallbackOverheadPct[String(r.batch)] ?? null,
        "project ms": r.project_ms,
        "project speedup": r.project_speedup,
        ...(triton
          ? { "triton ms": r.triton_ms ?? null, "triton speedup": r.triton_speedup ?? null }
          : {}),
        "tokens equal": `${r.fallback_tokens_equal ?? "–"} / ${r.project_tokens_equal ?? "–"}${
          triton ? ` / ${r.triton_tokens_equal ?? "–"}` : ""
        }`,
        "project kernels": families(r.project_definitions).join(", "),
        "slower: measured / predicted ms": r.slow_delta_ms === null
          ? null
          : `${r.slow_delta_ms} / ${r.slow_predicted_ms ?? "–"}`,
        error: [
          r.fallback_error && `fallback: ${r.fallback_error}`,
          r.project_error && `project: ${r.project_error}`,
          r.triton_error && `triton: ${r.triton_error}`,
          r.slow_error && `slower: ${r.slow_error}`,
        ]
          .filter(Boolean).join("; ") || null,
      })),
    });
  }
  if (a.graphs.length) {
    const errors = a.graphs.some((r) => r.errors.length);
    const triton = a.graphs.some((r) => r.triton_ms !== undefined);
    const predicted = a.graphs.some((r) => r.slow_predicted_ms != null);
    tables.push({
      id: `apply_graphs_${runId}`,
      title: "CUDA graphs: one decode-shaped forward replayed, unpatched and patched",
      caption:
        "One forward of batch × 1 token without a KV cache, captured as a CUDA graph after three eager calls and replayed (ms, median of 20 replays): unpatched; patched with the fallback (overhead % against unpatched: the paper's Fig. 8 setting, SGLang replaying graphs); with the project's kernels; with the deliberately slower solution (where measured, its slowdown over the fallback beside the sum over the forward's gemm calls of its per-call difference, each timed on its own: predicted). argmax equal: share of rows whose next token matches the unpatched graph's (fallback). in capture: calls that ran the fallback for being captured before their solution was loaded (0 after warm-up).",
      columns: [
        "dtype",
        "batch",
        "unpatched ms",
        "fallback ms",
        "overhead %",
        "project ms",
        ...(triton ? ["triton ms"] : []),
        "slower ms",
        ...(predicted ? ["slower − fallback ms", "predicted ms"] : []),
        "argmax equal",
        "in capture",
        ...(errors ? ["error"] : []),
      ],
      rows: a.graphs.map((r) => ({
        dtype: r.dtype,
        batch: r.batch,
        "unpatched ms": r.unpatched_ms,
        "fallback ms": r.fallback_ms,
        "overhead %": r.fallback_overhead_pct,
        "project ms": r.project_ms,
        ...(triton ? { "triton ms": r.triton_ms ?? null } : {}),
        "slower ms": r.slow_ms,
        ...(predicted
          ? {
            "slower − fallback ms": r.slow_delta_ms ?? null,
            "predicted ms": r.slow_predicted_ms ?? null,
          }
          : {}),
        "argmax equal": r.fallback_argmax_equal,
        "in capture": r.fallback_in_capture,
        error: r.errors.join("; ") || null,
      })),
    });
  }
  if (a.paged.length) {
    const errors = a.paged.some((r) => r.error);
    tables.push({
      id: `apply_paged_${runId}`,
      title: "The paged decoder: torch attention against the project's paged kernels",
      caption:
        "The paged-KV decoder (bf16, page size 1), prompt 32 + the script's steps (ms, one run each): attention by the torch fallback, then by the project's CUDA paged decode/prefill kernels through apply(). speedup: torch / project; tokens equal: share of tokens equal to the torch run's; hits: calls the kernels served.",
      columns: [
        "batch",
        "torch ms",
        "project ms",
        "speedup",
        "tokens equal",
        "hits",
        ...(errors ? ["error"] : []),
      ],
      rows: a.paged.map((r) => ({
        batch: r.batch,
        "torch ms": r.torch_ms,
        "project ms": r.project_ms,
        speedup: r.speedup,
        "tokens equal": r.tokens_equal,
        hits: r.hits ?? null,
        error: r.error ?? null,
      })),
    });
  }
  return tables;
}

/** How to measure apply(), for a report with no measurement of it. */
export const APPLY_HOW =
  "apply() has not been measured in any shipped run: run <code>PYTHONPATH=python python3 python/tests/gpu_bench_apply.py</code> on a GPU (it writes <code>$OUT/apply_bench.json</code>), then <code>deno run -A tools/ae/apply_measurements.ts apply_bench.json results/&lt;run&gt;/run.json</code>.";

/** The section's HTML: each measured run on its own, or one line saying how to measure. */
export function renderApplySection(runs: ApplyRun[]): string {
  const out = [`<section id="apply"><h2>apply(): the kernels inside a model</h2>`];
  const measured = runs.flatMap((r) => {
    const a = applyOf(r);
    return a ? [{ run: r, a }] : [];
  });
  if (!measured.length) out.push(`<p>${APPLY_HOW}</p>`);
  for (const { run, a } of measured) {
    const device = a.source?.device ?? run.gpu ?? "device not recorded";
    out.push(
      `<h3 id="apply-${html(run.id)}">Run ${html(run.id)}: ${html(device)}${
        a.source?.torch ? ` (torch ${html(a.source.torch)})` : ""
      }</h3>`,
      `<p>${html(applyFindings(a))}</p>`,
    );
    for (const t of applyTables(run.id, a)) {
      out.push(
        `<h4>${html(t.title)}</h4><p class="caption">${html(t.caption)}</p>`,
        toHtml(t, t.rows.length),
      );
    }
    if (a.source) {
      out.push(
        `<p class="caption">From ${html(a.source.file)}, recorded in results/${
          html(run.id)
        }/run.json (measurements.apply).</p>`,
      );
    }
  }
  out.push(`</section>`);
  return out.join("\n");
}
