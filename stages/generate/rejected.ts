/**
 * The solutions a corpus cell rejected (entry point or signature against the definition, by
 * flashinfer-bench's rules) are failures, not absences: each is written to the cell's `rejected/`
 * folder, a TraceSet of its own (so compile, verify and time, which read the cell's root, never see
 * it), with a FlashInfer trace marking it COMPILE_ERROR, flashinfer-bench's status for a solution
 * that cannot be built or loaded, the reasons in its log. Aggregate reads that folder and counts the
 * solution as failing every workload the run judged of its definition (stages/aggregate/fragment.ts
 * names the folder too: stages never import each other).
 */
import { copyFileSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  emptyTraceSet,
  type Trace,
  type Workload,
  writeTraceSet,
} from "../../pipeline/trace/mod.ts";
import type { RejectedSolution } from "./corpus.ts";
import { type Upstream, workloadKey } from "./upstream.ts";

/** The folder of a cell's output holding its rejected solutions. */
export const REJECTED_DIR = "rejected";

/**
 * The trace's timestamp. Generate is a pure stage (its outputs are byte-identical for a key), so
 * the time of the run cannot be written; the epoch says "not a measurement".
 */
export const REJECTED_TIMESTAMP = "1970-01-01T00:00:00";

/** The trace's hardware: nothing ran (the format requires a non-empty name). */
export const REJECTED_HARDWARE = "none (rejected by tracepipe generate before any build)";

/**
 * The log of a rejected solution's trace: one `error:` line a reason, the first naming the check, so
 * that aggregate's compile-error taxonomy files it under the rejection.
 */
export function rejectedLog(r: RejectedSolution): string {
  const [first, ...rest] = r.reasons.length ? r.reasons : ["(no reason recorded)"];
  return [
    `error: rejected by generate: ${r.file} fails flashinfer-bench's entry-point and signature ` +
    `check against definition ${r.definition.name}: ${first}`,
    ...rest.map((x) => `error: ${x}`),
  ].join("\n");
}

/** The FlashInfer trace marking a rejected solution failed on `workload`. */
export function rejectedTrace(r: RejectedSolution, workload: Workload): Trace {
  return {
    definition: r.definition.name,
    workload,
    solution: r.solution.name,
    evaluation: {
      status: "COMPILE_ERROR",
      environment: { hardware: REJECTED_HARDWARE, libs: {} },
      timestamp: REJECTED_TIMESTAMP,
      log: rejectedLog(r),
      correctness: null,
      performance: null,
    },
  };
}

/**
 * Writes the rejected solutions, their definitions and traces (on each definition's first
 * workload, with its blobs, so the folder is a valid TraceSet) under `outDir/rejected`. A solution
 * whose definition has no workload in the run gets no trace (nothing of that definition is judged);
 * those are returned.
 */
export function writeRejected(
  outDir: string,
  rejected: RejectedSolution[],
  up: Upstream,
): { traces: number; withoutWorkload: string[] } {
  const withoutWorkload: string[] = [];
  if (!rejected.length) return { traces: 0, withoutWorkload };
  const root = join(outDir, REJECTED_DIR);
  const set = emptyTraceSet(root);
  for (const r of rejected) {
    set.definitions.set(r.definition.name, r.definition);
    set.solutions.set(r.solution.name, r.solution);
    const workload = up.workloads.get(r.definition.name)?.[0];
    if (!workload) {
      withoutWorkload.push(r.solution.name);
      continue;
    }
    if (!set.workloads.get(r.definition.name)?.length) {
      set.workloads.set(r.definition.name, [workload]);
      copyBlobs(
        workload,
        up.workloadRoots.get(workloadKey(r.definition.name, workload.uuid)),
        root,
      );
    }
    set.traces.push(rejectedTrace(r, workload));
  }
  writeTraceSet(set, root);
  return { traces: set.traces.length, withoutWorkload };
}

/** Copies the safetensors blobs a workload references from its fragment root into `root`. */
function copyBlobs(w: Workload, from: string | undefined, root: string): void {
  for (const inp of Object.values(w.inputs)) {
    if (inp.type !== "safetensors" || !from) continue;
    const src = join(from, inp.path);
    if (!existsSync(src)) continue;
    mkdirSync(dirname(join(root, inp.path)), { recursive: true });
    copyFileSync(src, join(root, inp.path));
  }
}
