/**
 * Best of sweep: from traces, the sweep point with the best median latency per (kernel,
 * definition), emitted as `<kernel>__<definition>__best` (see docs/generate.md).
 */
import type { ParamValue, Solution, SweepIndexEntry, Trace } from "../../pipeline/trace/mod.ts";

/** The best point of one (kernel, definition) group, with the solution to record. */
export interface BestOfSweep {
  kernel: string;
  definition: string;
  /** Name of the chosen sweep-point solution. */
  chosen: string;
  point: Record<string, ParamValue>;
  medianLatencyMs: number;
  workloads: number;
  /** The chosen solution renamed `<kernel>__<definition>__best` (same sources and spec). */
  solution: Solution;
  /** Every point: eligible when PASSED on every workload any point of the group was run on. */
  candidates: Array<
    { solution: string; eligible: boolean; medianLatencyMs: number | null; reason?: string }
  >;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

/** Name of a group's best-of-sweep solution. */
export const bestSolutionName = (kernel: string, definition: string) =>
  `${kernel}__${definition}__best`;

/**
 * Picks per (kernel, definition) the sweep point with the lowest median over workloads of its
 * per-workload latency (the median of its PASSED traces on that workload). A point is eligible
 * only if it PASSED every workload that any point of the group was run on; ties go to the
 * lexically smaller solution name. Groups with no eligible point are left out.
 */
export function selectBestOfSweep(
  traces: Trace[],
  index: SweepIndexEntry[],
  solutions: Map<string, Solution>,
): BestOfSweep[] {
  const entryOf = new Map(index.map((e) => [e.solution, e]));
  const groups = new Map<string, SweepIndexEntry[]>();
  for (const e of index) {
    const k = `${e.kernel}\u0000${e.definition}`;
    groups.set(k, [...(groups.get(k) ?? []), e]);
  }
  const bySolution = new Map<string, Trace[]>();
  for (const t of traces) {
    if (
      t.solution && entryOf.has(t.solution) && t.definition === entryOf.get(t.solution)!.definition
    ) {
      bySolution.set(t.solution, [...(bySolution.get(t.solution) ?? []), t]);
    }
  }
  const out: BestOfSweep[] = [];
  for (
    const entries of [...groups.values()].sort((a, b) => (a[0].solution < b[0].solution ? -1 : 1))
  ) {
    const workloads = new Set<string>();
    for (const e of entries) {
      for (const t of bySolution.get(e.solution) ?? []) workloads.add(t.workload.uuid);
    }
    if (workloads.size === 0) continue;
    const candidates: BestOfSweep["candidates"] = [];
    for (const e of entries) {
      const per = new Map<string, Trace[]>();
      for (const t of bySolution.get(e.solution) ?? []) {
        per.set(t.workload.uuid, [...(per.get(t.workload.uuid) ?? []), t]);
      }
      let reason: string | undefined;
      const lat: number[] = [];
      for (const w of [...workloads].sort()) {
        const ts = per.get(w) ?? [];
        if (ts.length === 0) reason ??= `no trace on workload ${w}`;
        else if (ts.some((t) => t.evaluation?.status !== "PASSED" || !t.evaluation.performance)) {
          reason ??= `not PASSED on workload ${w}`;
        } else lat.push(median(ts.map((t) => t.evaluation!.performance!.latency_ms)));
      }
      candidates.push(
        reason
          ? { solution: e.solution, eligible: false, medianLatencyMs: null, reason }
          : { solution: e.solution, eligible: true, medianLatencyMs: median(lat) },
      );
    }
    const eligible = candidates.filter((c) => c.eligible)
      .sort((a, b) =>
        a.medianLatencyMs! - b.medianLatencyMs! || (a.solution < b.solution ? -1 : 1)
      );
    if (eligible.length === 0) continue;
    const best = eligible[0];
    const entry = entryOf.get(best.solution)!;
    const sol = solutions.get(best.solution);
    if (!sol) continue;
    const swept = Object.keys(entry.point).sort().map((n) => `${n}=${entry.point[n]}`).join(", ");
    out.push({
      kernel: entry.kernel,
      definition: entry.definition,
      chosen: best.solution,
      point: entry.point,
      medianLatencyMs: best.medianLatencyMs!,
      workloads: workloads.size,
      solution: {
        ...sol,
        name: bestSolutionName(entry.kernel, entry.definition),
        description: `Best of sweep: ${best.solution} (${
          swept || "no params"
        }), median latency ${best.medianLatencyMs} ms over ${workloads.size} workload(s).`,
      },
      candidates,
    });
  }
  return out;
}

/** The chosen point's traces relabelled as the `__best` solution (for reports; see docs/generate.md). */
export function bestOfSweepTraces(best: BestOfSweep, traces: Trace[]): Trace[] {
  return traces.filter((t) => t.solution === best.chosen && t.definition === best.definition)
    .map((t) => ({ ...t, solution: best.solution.name }));
}
