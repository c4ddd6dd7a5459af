/**
 * Synthetic TraceSet generator for the aggregate benchmark (and for smoke runs of the report).
 * It writes a complete fragment (definitions, workloads, solutions, traces) in the exact
 * flashinfer-bench layout with the canonical writers, so the aggregate reads it exactly as it
 * reads real upstream cells. Deterministic for a given seed.
 *
 *   deno run --allow-all stages/aggregate/synth.ts OUT_DIR [TRACES=1000000] [SEED=1]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type Definition,
  definitionPath,
  type EvaluationStatus,
  formatDefinition,
  formatJsonl,
  formatSolution,
  formatTraceLine,
  type Solution,
  solutionPath,
  type Trace,
  tracesPath,
  type Workload,
  workloadsPath,
} from "../../pipeline/trace/mod.ts";
import { rng } from "../../pipeline/lib/mod.ts";

/** Options of the generator. */
export interface SynthOptions {
  /** Total number of solution traces to write (approximately: rounded to whole cells). */
  traces: number;
  seed?: number;
  workloadsPerDefinition?: number;
  /** Agent authors; each writes CUDA and Triton solutions for every definition. */
  authors?: string[];
  solutionsPerAuthorLanguage?: number;
  /** Fraction of lines written malformed (to exercise the fallback path). */
  malformedFraction?: number;
}

/** What was written. */
export interface SynthResult {
  traces: number;
  files: number;
  definitions: number;
  workloads: number;
  solutions: number;
  malformed: number;
}

const REF = "import torch\n\ndef run(*args):\n    raise NotImplementedError\n";

/** A GEMM definition `gemm_n<N>_k<K>` (C = A @ B.T), for synthetic and fixture trace sets. */
export function gemmDefinition(n: number, k: number): Definition {
  return {
    name: `gemm_n${n}_k${k}`,
    op_type: "gemm",
    axes: { M: { type: "var" }, N: { type: "const", value: n }, K: { type: "const", value: k } },
    inputs: {
      A: { shape: ["M", "K"], dtype: "float16" },
      B: { shape: ["N", "K"], dtype: "float16" },
    },
    outputs: { C: { shape: ["M", "N"], dtype: "float16" } },
    reference: REF,
    tags: [],
    constraints: [],
  };
}

/** An RMSNorm definition `rmsnorm_h<H>`, for synthetic and fixture trace sets. */
export function rmsnormDefinition(h: number): Definition {
  return {
    name: `rmsnorm_h${h}`,
    op_type: "rmsnorm",
    axes: { batch_size: { type: "var" }, hidden_size: { type: "const", value: h } },
    inputs: {
      hidden_states: { shape: ["batch_size", "hidden_size"], dtype: "bfloat16" },
      weight: { shape: ["hidden_size"], dtype: "bfloat16" },
    },
    outputs: { output: { shape: ["batch_size", "hidden_size"], dtype: "bfloat16" } },
    reference: REF,
    tags: [],
    constraints: [],
  };
}

function gqaDecode(kv: number): Definition {
  const c = (value: number) => ({ type: "const" as const, value });
  return {
    name: `gqa_paged_decode_h32_kv${kv}_d128_ps1`,
    op_type: "gqa_paged",
    axes: {
      batch_size: { type: "var" },
      num_qo_heads: c(32),
      num_kv_heads: c(kv),
      head_dim: c(128),
      num_pages: { type: "var" },
      page_size: c(1),
      len_indptr: { type: "var" },
      num_kv_indices: { type: "var" },
    },
    inputs: {
      q: { shape: ["batch_size", "num_qo_heads", "head_dim"], dtype: "bfloat16" },
      k_cache: { shape: ["num_pages", "page_size", "num_kv_heads", "head_dim"], dtype: "bfloat16" },
      v_cache: { shape: ["num_pages", "page_size", "num_kv_heads", "head_dim"], dtype: "bfloat16" },
      kv_indptr: { shape: ["len_indptr"], dtype: "int32" },
      kv_indices: { shape: ["num_kv_indices"], dtype: "int32" },
    },
    outputs: { output: { shape: ["batch_size", "num_qo_heads", "head_dim"], dtype: "bfloat16" } },
    reference: REF,
    tags: [],
    constraints: [],
  };
}

/** The synthetic definitions: a GEMM, an RMSNorm and a GQA-decode family, as in Fig. 6. */
export function synthDefinitions(): Definition[] {
  return [
    gemmDefinition(4096, 4096),
    gemmDefinition(6144, 4096),
    gemmDefinition(28672, 4096),
    gemmDefinition(4096, 14336),
    rmsnormDefinition(2048),
    rmsnormDefinition(4096),
    rmsnormDefinition(7168),
    gqaDecode(4),
    gqaDecode(8),
  ];
}

function workloadFor(def: Definition, i: number, r: () => number): Workload {
  const uuid = `${def.name}-w${String(i).padStart(4, "0")}`;
  const pow = 1 << Math.floor(r() * 12);
  if (def.op_type === "gemm") {
    return { uuid, axes: { M: pow }, inputs: { A: { type: "random" }, B: { type: "random" } } };
  }
  if (def.op_type === "rmsnorm") {
    return {
      uuid,
      axes: { batch_size: pow },
      inputs: { hidden_states: { type: "random" }, weight: { type: "random" } },
    };
  }
  const bs = 1 + Math.floor(r() * 64);
  const kvLen = bs * (64 + Math.floor(r() * 2048));
  return {
    uuid,
    axes: { batch_size: bs, num_pages: kvLen + 16, len_indptr: bs + 1, num_kv_indices: kvLen },
    inputs: {
      q: { type: "random" },
      k_cache: { type: "random" },
      v_cache: { type: "random" },
      kv_indptr: { type: "random" },
      kv_indices: { type: "random" },
    },
  };
}

/**
 * A solution of `def` whose one source file (`<stem>.cu` for CUDA, `<stem>.py` otherwise) holds
 * `content`: a placeholder the aggregate reads but never runs (the benchmark's data and the
 * hand-checked fixture's).
 */
export function syntheticSolution(
  def: Definition,
  author: string,
  language: "cuda" | "triton" | "python",
  name: string,
  stem = "kernel",
  content = "// synthetic\n",
): Solution {
  const file = `${stem}.${language === "cuda" ? "cu" : "py"}`;
  return {
    name,
    definition: def.name,
    author,
    spec: {
      language,
      target_hardware: ["NVIDIA H100"],
      entry_point: `${file}::run`,
      dependencies: [],
      destination_passing_style: true,
      binding: null,
    },
    sources: [{ path: file, content }],
  };
}

const FAIL: EvaluationStatus[] = [
  "COMPILE_ERROR",
  "RUNTIME_ERROR",
  "INCORRECT_NUMERICAL",
  "INCORRECT_SHAPE",
  "TIMEOUT",
];
const COMPILE_LOGS = [
  'kernel.cu(12): error: identifier "__hfma2x" is undefined',
  'kernel.cu(40): error: expected a ";"',
  "triton.compiler.errors.CompilationError: at 10:4: unsupported tensor index",
  "SyntaxError: invalid syntax (kernel.py, line 7)",
  "ModuleNotFoundError: No module named 'cutlass'",
  "ptxas error   : Entry function uses too much shared data",
];

/** Writes a synthetic TraceSet fragment under `root`. */
export function writeSynthTraceSet(root: string, opts: SynthOptions): SynthResult {
  const r = rng(opts.seed ?? 1);
  const defs = synthDefinitions();
  const wpd = opts.workloadsPerDefinition ?? 50;
  const authors = opts.authors ?? ["agent-a", "agent-b", "agent-c", "agent-d"];
  const spal = opts.solutionsPerAuthorLanguage ?? 3;
  const put = (rel: string, text: string) => {
    mkdirSync(join(root, rel, ".."), { recursive: true });
    writeFileSync(join(root, rel), text);
  };
  const workloads = new Map<string, Workload[]>();
  const sols: Array<{ def: Definition; sol: Solution; skill: number; pass: number }> = [];
  for (const def of defs) {
    put(definitionPath(def), formatDefinition(def));
    const wls = Array.from({ length: wpd }, (_, i) => workloadFor(def, i, r));
    workloads.set(def.name, wls);
    put(
      workloadsPath(def.op_type, def.name),
      formatJsonl(
        wls.map((w) => ({ definition: def.name, workload: w, solution: null, evaluation: null })),
      ),
    );
    const base = def.op_type === "gemm"
      ? `torch_matmul_${def.name}`
      : `flashinfer_wrapper_${def.name}`;
    sols.push({ def, sol: syntheticSolution(def, "baseline", "python", base), skill: 1, pass: 1 });
    authors.forEach((a, ai) => {
      for (const lang of ["cuda", "triton"] as const) {
        for (let s = 0; s < spal; s++) {
          const skill = 0.2 + r() * (def.op_type === "rmsnorm" ? 1.6 : 0.9);
          const pass = lang === "triton" ? 0.8 + 0.15 * r() : 0.3 + 0.1 * ai + 0.2 * r();
          sols.push({
            def,
            sol: syntheticSolution(def, a, lang, `${a}_${lang}_${def.name}_${s}`),
            skill,
            pass,
          });
        }
      }
    });
  }
  for (const { def, sol } of sols) put(solutionPath(sol, def.op_type), formatSolution(sol));

  const cells = sols.length * wpd;
  const runs = Math.max(1, Math.round(opts.traces / cells));
  const malformedFraction = opts.malformedFraction ?? 0;
  const byFile = new Map<string, string[]>();
  let traces = 0;
  let malformed = 0;
  const env = {
    hardware: "NVIDIA H100 80GB HBM3",
    libs: { torch: "2.11.0", triton: "3.6.0", cuda: "13.0" },
  };
  for (const { def, sol, skill, pass } of sols) {
    const rel = tracesPath(sol.author, def.op_type, def.name);
    const lines = byFile.get(rel) ?? [];
    for (const w of workloads.get(def.name)!) {
      const baseMs = 0.005 + 0.001 * (Object.values(w.axes)[0] ?? 1) ** 0.5;
      const ok = r() < pass;
      const failStatus = FAIL[Math.floor(r() * FAIL.length)];
      for (let k = 0; k < runs && traces < opts.traces; k++) {
        if (malformedFraction > 0 && r() < malformedFraction) {
          lines.push(`{"definition": "${def.name}", "workload": {broken`);
          malformed++;
          traces++;
          continue;
        }
        const latency = sol.author === "baseline"
          ? baseMs * (1 + 0.02 * r())
          : baseMs / (skill * (0.9 + 0.2 * r()));
        const t: Trace = {
          definition: def.name,
          workload: w,
          solution: sol.name,
          evaluation: ok
            ? {
              status: "PASSED",
              environment: env,
              timestamp: "2026-11-23T12:00:00",
              log: "",
              correctness: { max_relative_error: 1e-3 * r(), max_absolute_error: 1e-3 * r() },
              performance: {
                latency_ms: latency,
                reference_latency_ms: baseMs * 8,
                speedup_factor: (baseMs * 8) / latency,
              },
            }
            : {
              status: failStatus,
              environment: env,
              timestamp: "2026-11-23T12:00:00",
              log: failStatus === "COMPILE_ERROR"
                ? COMPILE_LOGS[Math.floor(r() * COMPILE_LOGS.length)]
                : failStatus,
              correctness: failStatus === "INCORRECT_NUMERICAL"
                ? { max_relative_error: Infinity, max_absolute_error: 1 }
                : null,
              performance: null,
            },
        };
        lines.push(formatTraceLine(t));
        traces++;
      }
    }
    byFile.set(rel, lines);
  }
  for (const [rel, lines] of byFile) put(rel, lines.length ? lines.join("\n") + "\n" : "");
  return {
    traces,
    files: byFile.size,
    definitions: defs.length,
    workloads: defs.length * wpd,
    solutions: sols.length,
    malformed,
  };
}

if (import.meta.main) {
  const [out, n, seed] = Deno.args;
  if (!out) {
    console.error("usage: synth.ts OUT_DIR [TRACES=1000000] [SEED=1]");
    Deno.exit(2);
  }
  const t0 = performance.now();
  const res = writeSynthTraceSet(out, { traces: Number(n ?? 1_000_000), seed: Number(seed ?? 1) });
  console.log(JSON.stringify(res), `${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
