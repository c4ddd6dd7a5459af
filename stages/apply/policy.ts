/**
 * The apply policies, pure functions of the final traces: flashinfer-bench's ranked table (the
 * fastest solution per exact var-axes key, and per definition the solution winning most keys) and
 * the pinned selection of FlashInfer's Trace Apply (one solution per definition, whatever the
 * shapes). python/tracepipe_apply/table.py builds the same ranked table at run time;
 * python/apply_test.ts checks that the two agree.
 */
import type { Solution, Trace } from "../../pipeline/trace/mod.ts";

/** What decides which traces count. */
export interface PolicyParams {
  /** A trace counts when PASSED with max_absolute_error <= max_atol ... */
  max_atol: number;
  /** ... and max_relative_error <= max_rtol (flashinfer-bench's filter, both limits). */
  max_rtol: number;
  /** Authors whose solutions are never chosen (say, "baseline": the engine's own kernels). */
  exclude_authors: string[];
}

/** The ranked table, as flashinfer-bench persists it, with the keys won per solution. */
export interface RankedTable {
  format: "tracepipe-apply-table/1";
  config: PolicyParams;
  /** definition → ApplyKey JSON (`{"axes":[[name,value],...],"feats":[]}`) → solution. */
  index: Record<string, Record<string, string>>;
  /** definition → the solution that won most keys (ties: the smaller name). */
  def_best: Record<string, string>;
  /** definition → [solution, keys won], most first. */
  ranked: Record<string, Array<[string, number]>>;
}

/** One definition's pinned choice and why. */
export interface PinnedChoice {
  solution: string;
  /** Distinct workloads it passed. */
  workloads: number;
  geomean_speedup: number;
  /** Solutions that passed every workload they were judged on (the candidates). */
  eligible: number;
  /** Solutions judged on the definition. */
  judged: number;
}

/** The pinned selection: definition → solution, and the choices with their evidence. */
export interface PinnedSelection {
  format: "tracepipe-apply-pinned/1";
  config: PolicyParams;
  solutions: Record<string, string>;
  choices: Record<string, PinnedChoice>;
}

/** flashinfer-bench's ApplyKey in pydantic's compact JSON: (name, value) pairs sorted by name. */
export function keyJson(axes: Record<string, number>): string {
  const names = Object.keys(axes).sort();
  return JSON.stringify({ axes: names.map((n) => [n, axes[n]]), feats: [] });
}

/** Whether a trace is a PASSED one within both error limits (NaN errors never are). */
export function withinLimits(t: Trace, p: PolicyParams): boolean {
  const ev = t.evaluation;
  if (!ev || ev.status !== "PASSED" || !ev.performance) return false;
  const abs = ev.correctness?.max_absolute_error ?? 0;
  const rel = ev.correctness?.max_relative_error ?? 0;
  return abs <= p.max_atol && rel <= p.max_rtol;
}

const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** The traces of known, non-excluded solutions, grouped by definition (in trace order). */
function byDefinition(
  traces: Trace[],
  solutions: Map<string, Solution>,
  p: PolicyParams,
): Map<string, Trace[]> {
  const out = new Map<string, Trace[]>();
  for (const t of traces) {
    const sol = t.solution ? solutions.get(t.solution) : undefined;
    if (!sol || p.exclude_authors.includes(sol.author) || !t.evaluation) continue;
    out.set(t.definition, [...(out.get(t.definition) ?? []), t]);
  }
  return out;
}

/**
 * The ranked table: per definition and exact key (the workload's var axes), the counted trace with
 * the highest speedup_factor (ties: the smaller solution name, so the order traces were read in does
 * not matter); def_best is the solution winning most keys (ties: the smaller name).
 */
export function rankedTable(
  traces: Trace[],
  solutions: Map<string, Solution>,
  p: PolicyParams,
): RankedTable {
  const table: RankedTable = {
    format: "tracepipe-apply-table/1",
    config: p,
    index: {},
    def_best: {},
    ranked: {},
  };
  const groups = byDefinition(traces, solutions, p);
  for (const def of [...groups.keys()].sort(byName)) {
    const best = new Map<string, { sol: string; speedup: number }>();
    for (const t of groups.get(def)!) {
      if (!withinLimits(t, p)) continue;
      const k = keyJson(t.workload.axes);
      const s = t.evaluation!.performance!.speedup_factor;
      const prev = best.get(k);
      if (!prev || s > prev.speedup || (s === prev.speedup && t.solution! < prev.sol)) {
        best.set(k, { sol: t.solution!, speedup: s });
      }
    }
    if (!best.size) continue;
    const keys = [...best.keys()].sort(byName);
    table.index[def] = Object.fromEntries(keys.map((k) => [k, best.get(k)!.sol]));
    const wins = new Map<string, number>();
    for (const { sol } of best.values()) wins.set(sol, (wins.get(sol) ?? 0) + 1);
    const ranked = [...wins].sort((a, b) => b[1] - a[1] || byName(a[0], b[0]));
    table.def_best[def] = ranked[0][0];
    table.ranked[def] = ranked;
  }
  return table;
}

/** Relative slack under which two geometric means count as equal (then the name decides). */
const SCORE_TIE = 1e-9;

/**
 * The pinned selection: per definition, among the solutions whose every final trace is PASSED within
 * the limits (one that failed any workload is never pinned: it would run on every shape), the one
 * covering most workloads, then with the highest geometric-mean speedup, then the smaller name.
 */
export function pinnedSelection(
  traces: Trace[],
  solutions: Map<string, Solution>,
  p: PolicyParams,
): PinnedSelection {
  const out: PinnedSelection = {
    format: "tracepipe-apply-pinned/1",
    config: p,
    solutions: {},
    choices: {},
  };
  const groups = byDefinition(traces, solutions, p);
  for (const def of [...groups.keys()].sort(byName)) {
    const perSol = new Map<string, Trace[]>();
    for (const t of groups.get(def)!) {
      perSol.set(t.solution!, [...(perSol.get(t.solution!) ?? []), t]);
    }
    const cands: Array<{ sol: string; workloads: number; score: number }> = [];
    for (const [sol, ts] of perSol) {
      if (!ts.every((t) => withinLimits(t, p))) continue;
      const logs = ts.map((t) => Math.log(t.evaluation!.performance!.speedup_factor));
      const score = Math.exp(logs.reduce((a, b) => a + b, 0) / logs.length);
      cands.push({ sol, workloads: new Set(ts.map((t) => t.workload.uuid)).size, score });
    }
    if (!cands.length) continue;
    cands.sort((a, b) =>
      b.workloads - a.workloads ||
      (Math.abs(a.score - b.score) > SCORE_TIE * Math.max(a.score, b.score)
        ? b.score - a.score
        : 0) ||
      byName(a.sol, b.sol)
    );
    const c = cands[0];
    out.solutions[def] = c.sol;
    out.choices[def] = {
      solution: c.sol,
      workloads: c.workloads,
      geomean_speedup: c.score,
      eligible: cands.length,
      judged: perSol.size,
    };
  }
  return out;
}
