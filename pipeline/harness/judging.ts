/**
 * What compile, verify and time share: the merged view of their upstream fragments, which cells
 * can run on this machine, the harness code they execute, and writing traces.
 */
import { join } from "node:path";
import { z } from "zod";
import {
  type Definition,
  formatJsonl,
  inferShape,
  type MergedFragments,
  mergeFragments,
  type RootedWorkload,
  type Solution,
  Trace,
  tracesPath,
  type Workload,
} from "../trace/mod.ts";
import {
  type CellJob,
  type CellResult,
  REPO_ROOT,
  type Toolchain,
  writeFileAtomic,
} from "../engine/mod.ts";
import type { FiEvaluation, HarnessCell, HarnessResult, HarnessSession } from "./client.ts";
import { evaluationToJson } from "./client.ts";
import { gpuProvenance } from "./gpus.ts";
import type { HeartbeatOptions } from "./heartbeat.ts";
import type { Lane } from "./lanes.ts";

/** Where the harness keeps builds and scratch space (git-ignored, machine-local, reusable). */
export const HARNESS_WORK_DIR = join(REPO_ROOT, ".tracepipe", "harness");

/** Whether `source` compiles as a JavaScript regular expression (a profile's typo is a user error). */
function isRegex(source: string): boolean {
  try {
    new RegExp(source);
    return true;
  } catch {
    return false;
  }
}

/** Params shared by the judging stages: which solutions take part. */
export const SelectionParams = z.object({
  /** Only solutions by these authors (empty: all). */
  authors: z.array(z.string()).default([]),
  /** Only these languages (empty: all). */
  languages: z.array(z.string()).default([]),
  /** Only definitions whose name matches this regular expression (empty: all). */
  definition_regex: z.string().default("").refine(isRegex, {
    message: "not a valid regular expression",
  }),
  /** Hard limit for one harness process, in seconds. */
  harness_timeout_s: z.number().positive().default(3600),
});
export type SelectionParams = z.infer<typeof SelectionParams>;

/** Whether this machine can run a GPU. */
export const hasGpu = (tc: Toolchain) => tc.gpus.length > 0;

/**
 * Why a solution cannot be evaluated here, or null. On a CPU-only machine only Python solutions
 * run (and CUDA/C++ sources still compile, as a check, in the compile stage).
 */
export function notRunnableHere(
  sol: Solution,
  tc: Toolchain,
  stage: "compile" | "verify" | "time",
): string | null {
  if (!tc.python) {
    return "no Python interpreter (install python3 with torch, or set TRACEPIPE_PYTHON)";
  }
  if (!tc.python.torch) return `no torch in ${tc.python.path}`;
  if (needsFlashInfer(sol) && !tc.python.flashinfer) {
    return "toolchain unavailable: the flashinfer package is not installed here";
  }
  if (hasGpu(tc)) return null;
  const lang = sol.spec.language;
  if (lang === "python") return null;
  if ((lang === "cuda" || lang === "cpp") && stage === "compile") {
    return tc.nvcc || lang === "cpp" ? null : "no nvcc on this machine";
  }
  return `${lang} solutions need a GPU; this machine has none`;
}

/**
 * The distribution name of a dependency specifier, normalised (PEP 503): "FlashInfer_Python>=0.2"
 * → "flashinfer-python". The corpora write versions and extras ("flashinfer >= 0.2.8").
 */
export function dependencyName(spec: string): string {
  const m = /^\s*([A-Za-z0-9][A-Za-z0-9._-]*)/.exec(spec);
  return (m ? m[1] : spec.trim()).toLowerCase().replace(/[-_.]+/g, "-");
}

const FLASHINFER_IMPORT = /^\s*(?:import|from)\s+flashinfer\b/m;

/**
 * Whether a solution needs the flashinfer package: declared (under either distribution name) or
 * imported by a Python source. Without it the cell is not runnable, rather than a COMPILE_ERROR
 * that blames the solution for this machine's toolchain.
 */
export function needsFlashInfer(sol: Solution): boolean {
  const declared = sol.spec.dependencies.map(dependencyName);
  if (declared.includes("flashinfer") || declared.includes("flashinfer-python")) return true;
  return sol.sources.some((s) => s.path.endsWith(".py") && FLASHINFER_IMPORT.test(s.content));
}

/** Selected solutions with their definitions, sorted by (definition, name). */
export function selectSolutions(
  merged: MergedFragments,
  p: SelectionParams,
): Array<{ solution: Solution; definition: Definition }> {
  const re = p.definition_regex ? new RegExp(p.definition_regex) : null;
  const out: Array<{ solution: Solution; definition: Definition }> = [];
  for (const sol of merged.solutions.values()) {
    const def = merged.definitions.get(sol.definition);
    if (!def) continue;
    if (re && !re.test(def.name)) continue;
    if (p.authors.length && !p.authors.includes(sol.author)) continue;
    if (p.languages.length && !p.languages.includes(sol.spec.language)) continue;
    out.push({ solution: sol, definition: def });
  }
  return out.sort((a, b) =>
    a.definition.name === b.definition.name
      ? (a.solution.name < b.solution.name ? -1 : 1)
      : (a.definition.name < b.definition.name ? -1 : 1)
  );
}

/**
 * Merges the fragments of the given upstream stages, in stage order and, within a stage, in cell-id order:
 * never in run-index order, which `import` may change, since the first workloads of a definition are the
 * ones judged (`max_workloads`) and the choice must not move between runs.
 */
export function mergeUpstream(
  upstream: Record<string, CellResult[]>,
  stages: string[],
): MergedFragments {
  return mergeFragments(
    stages.flatMap((s) =>
      [...(upstream[s] ?? [])].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
    ),
  );
}

/**
 * A definition's workloads in the order they are judged (and `max_workloads` takes them): first those that came
 * with a corpus (merged from a fragment whose root is in `corpusRoots`: the workloads its authors judged their
 * solutions on), then the others (extracted from serving traces, the official set). Each group keeps merge
 * order, which follows stage and cell-id order ({@link mergeUpstream}), so the choice is deterministic.
 */
export function corpusWorkloadsFirst(
  workloads: readonly RootedWorkload[],
  corpusRoots: ReadonlySet<string>,
): RootedWorkload[] {
  return [
    ...workloads.filter((w) => corpusRoots.has(w.root)),
    ...workloads.filter((w) => !corpusRoots.has(w.root)),
  ];
}

/** Writes one trace into a cell's output as a TraceSet fragment (traces/<author>/<op>/<def>.jsonl). */
export function writeTrace(
  outDir: string,
  def: Definition,
  sol: Solution,
  workload: Trace["workload"],
  ev: FiEvaluation,
): Trace {
  const trace = Trace.parse({
    definition: def.name,
    workload,
    solution: sol.name,
    evaluation: evaluationToJson(ev),
  });
  writeFileAtomic(
    join(outDir, tracesPath(sol.author, def.op_type, def.name)),
    formatJsonl([trace]),
  );
  return trace;
}

/** The distinct solutions and workloads of a batch of (solution, workload) cells, first-seen order. */
export function distinctSolutionsAndWorkloads(
  cells: Array<{ solution: Solution; workload: RootedWorkload }>,
): { solutions: Solution[]; workloads: Workload[] } {
  return {
    solutions: [...new Map(cells.map((c) => [c.solution.name, c.solution])).values()],
    workloads: [
      ...new Map(cells.map((c) => [c.workload.workload.uuid, c.workload.workload])).values(),
    ],
  };
}

/** What a verify or time cell's payload holds that its harness job is built from. */
export interface JudgedCell {
  definition: Definition;
  solution: Solution;
  workload: RootedWorkload;
}

/** One group's harness job, run: the result, and each cell beside its own result (if any). */
export interface GroupJobResult<P extends JudgedCell> {
  result: HarnessResult;
  cells: Array<{ job: CellJob; payload: P; cell: HarnessCell | undefined }>;
  solutions: Solution[];
  workloads: Workload[];
  /** Wall seconds of the job. */
  seconds: number;
  /** For the job's log line: its phase times and, where the lane has one, its GPU (` [cells 3.2s] on GPU 1`). */
  detail: string;
}

/**
 * Runs one definition's group of cells (verify or time) as one harness job on `session`, a judge of
 * `lane`: the distinct solutions and workloads of the group, with `extra` (config, baseline) added.
 * Each cell's provenance records the GPU that judged it. A job the harness could not run is an error
 * naming the command and the definition.
 */
export async function runGroupJob<P extends JudgedCell>(
  session: HarnessSession,
  lane: Lane,
  command: "verify" | "time",
  group: CellJob[],
  extra: Record<string, unknown>,
  timeoutMs: number,
): Promise<GroupJobResult<P>> {
  const payloads = group.map((j) => j.plan.payload as P);
  const first = payloads[0];
  const { solutions, workloads } = distinctSolutionsAndWorkloads(payloads);
  const t0 = performance.now();
  const result = await session.run(command, {
    protocol: 1,
    device: "auto",
    work_dir: HARNESS_WORK_DIR,
    dataset_root: first.workload.root,
    definition: first.definition,
    solutions,
    workloads,
    ...extra,
  }, { timeoutMs, signal: group[0].signal });
  if (!result.ok) {
    throw new Error(`harness ${command} for ${first.definition.name}: ${result.error}`);
  }
  const gpu = lane.gpu;
  if (gpu) {
    for (const job of group) job.recordProvenance?.({ gpu: gpuProvenance(gpu) });
  }
  const cells = group.map((job, i) => ({
    job,
    payload: payloads[i],
    cell: result.results.find((r) =>
      r.solution === payloads[i].solution.name && r.workload === payloads[i].workload.workload.uuid
    ),
  }));
  const seconds = (performance.now() - t0) / 1000;
  const detail = describeJobPhases(result.job_s) + (gpu ? ` on GPU ${gpu.index}` : "");
  return { result, cells, solutions, workloads, seconds, detail };
}

/**
 * Rough cost of judging a group of (solution, workload) cells of one definition: the input elements of its
 * workloads times its solutions (used to order groups, never to decide anything).
 */
export function groupCost(group: CellJob[]): number {
  const cells = group.map((j) =>
    j.plan.payload as { definition: Definition; solution: Solution; workload: RootedWorkload }
  );
  const { solutions, workloads } = distinctSolutionsAndWorkloads(cells);
  const def = cells[0].definition;
  let elements = 0;
  for (const w of workloads) {
    for (const name of Object.keys(def.inputs)) {
      try {
        elements += (inferShape(def, name, w.axes) ?? [1]).reduce((x, y) => x * y, 1);
      } catch { /* an axis without a value counts as nothing */ }
    }
  }
  return elements * solutions.length;
}

/** Samples the sampling evaluator's TVD test draws per cell (2 rows x 500 000, flashinfer-bench's count). */
const TVD_SAMPLES = 1_000_000;

/**
 * Rough cost of verifying a group: {@link groupCost}, plus, for a sampler with a non-empty batch, its TVD
 * test, which reads the vocabulary (the largest constant axis) once per sample. A top-k mask keeps few
 * tokens, and such a test usually stops at a tenth of its samples.
 */
export function verifyCost(group: CellJob[]): number {
  const def = (group[0].plan.payload as { definition: Definition }).definition;
  const base = groupCost(group);
  if (def.op_type !== "sampling") return base;
  const vocab = Object.values(def.axes).reduce(
    (m, a) => Math.max(m, a.type === "const" ? a.value : 0),
    0,
  );
  if (base < vocab) return base; // an empty batch: only the output shape is checked
  return base + group.length * TVD_SAMPLES * vocab / (def.name.includes("top_k") ? 10 : 1);
}

/** Groups items by a key, keeping first-seen order. */
export function groupBy<T>(items: T[], key: (t: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const it of items) m.set(key(it), [...(m.get(key(it)) ?? []), it]);
  return m;
}

/**
 * The progress lines of a judging stage whose harness jobs are groups of cells (`mapWithSessions`'s
 * `progress`, lanes.ts): cells done of all, elapsed, and the jobs running, named by definition and solution.
 */
export function cellProgress(log: (line: string) => void): HeartbeatOptions<CellJob[]> {
  return {
    log,
    cells: (group) => group.length,
    label: (group) => {
      const payloads = group.map((j) =>
        j.plan.payload as { definition: Definition; solution: Solution }
      );
      const solutions = new Set(payloads.map((p) => p.solution.name));
      const def = payloads[0]?.definition.name ?? "?";
      return solutions.size === 1
        ? `${def}/${payloads[0].solution.name}`
        : `${def} (${solutions.size} solutions)`;
    },
  };
}

/** A harness job's phase times for a log line: ` [prepare 0.1s, cells 3.2s, …]`, or "" without them. */
export function describeJobPhases(jobS: Record<string, number> | undefined): string {
  if (!jobS || Object.keys(jobS).length === 0) return "";
  return ` [${Object.entries(jobS).map(([k, v]) => `${k} ${v.toFixed(2)}s`).join(", ")}]`;
}

/** What a compile cell publishes downstream. */
export interface CompileSummary {
  solution: string;
  definition: string;
  outcome: "built" | "compile_error" | "toolchain_unavailable" | "not_runnable_here";
  reason: string | null;
}

/** What a verify cell publishes downstream. */
export interface VerifySummary {
  definition: string;
  solution: string;
  workload: string;
  outcome: string;
  status: string | null;
  reason: string | null;
}
