/**
 * The `apply` stage: the judged kernels as a deployable set. From the final traces (time's PASSED
 * ones, verify's failures) it writes one cell holding
 *
 *   definitions/ solutions/ traces/   a TraceSet for tracepipe_apply's ranked mode (FIB_DATASET_PATH)
 *   apply_table.json                  the ranked table (fastest solution per exact var-axes key)
 *   pinned.json                       one solution per definition and the evidence for it
 *   pinned/definitions/ pinned/solutions/   that choice as a folder FlashInfer's Trace Apply reads
 *                                     (FLASHINFER_TRACE_APPLY_PATH), one solution per definition
 *
 * and publishes the latest cell to `.tracepipe/apply/`, so `reproduce` always leaves a set to deploy.
 */
import { cpSync, existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { z } from "zod";
import {
  type CellResult,
  defineStage,
  digestJson,
  formatDiagnostic,
  writeFileAtomic,
} from "../../pipeline/engine/mod.ts";
import { emptyTraceSet, mergeFragments, writeTraceSet } from "../../pipeline/trace/mod.ts";
import { pinnedSelection, rankedTable } from "./policy.ts";

/** Params of the apply stage. */
export const ApplyParams = z.object({
  /** A trace counts when PASSED with max_absolute_error at most this (flashinfer-bench's default). */
  max_atol: z.number().positive().default(1e-2),
  /** ... and max_relative_error at most this (flashinfer-bench's default, strict on purpose). */
  max_rtol: z.number().positive().default(1e-5),
  /** Authors never chosen (e.g. ["baseline"] to deploy only candidate kernels). */
  exclude_authors: z.array(z.string()).default([]),
});
export type ApplyParams = z.infer<typeof ApplyParams>;

/** The stages whose cells the set is made from, in merge order. */
const SOURCES = ["definitions", "generate", "verify", "time"] as const;

/** Where `publish` copies the latest cell, under the repository root. */
export const PUBLISH_DIR = join(".tracepipe", "apply");

interface Payload {
  cells: CellResult[];
}

/** Sorted by id, so the merged traces have one order whatever order the engine listed them in. */
const sorted = (cells: CellResult[] = []) =>
  [...cells].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

/** Writes the deployable set of `cells` (upstream fragments) into `outDir`; returns the summary. */
export function writeApplySet(
  cells: CellResult[],
  outDir: string,
  params: ApplyParams,
  log: (m: string) => void,
): Record<string, number> {
  const merged = mergeFragments(cells);
  for (const d of merged.diagnostics) log(formatDiagnostic(d));
  // Only what a trace of a known definition and solution refers to: the set stays small and whole.
  const traces = merged.traces.filter((t) =>
    t.solution !== null && merged.definitions.has(t.definition) && merged.solutions.has(t.solution)
  );
  const set = emptyTraceSet(outDir);
  for (const t of traces) {
    set.definitions.set(t.definition, merged.definitions.get(t.definition)!);
    set.solutions.set(t.solution!, merged.solutions.get(t.solution!)!);
  }
  set.traces = traces;
  writeTraceSet(set, outDir);
  const table = rankedTable(traces, set.solutions, params);
  const pinned = pinnedSelection(traces, set.solutions, params);
  writeFileAtomic(join(outDir, "apply_table.json"), JSON.stringify(table, null, 2) + "\n");
  writeFileAtomic(join(outDir, "pinned.json"), JSON.stringify(pinned, null, 2) + "\n");
  const pinnedSet = emptyTraceSet(join(outDir, "pinned"));
  for (const [def, sol] of Object.entries(pinned.solutions)) {
    pinnedSet.definitions.set(def, set.definitions.get(def)!);
    pinnedSet.solutions.set(sol, set.solutions.get(sol)!);
  }
  mkdirSync(join(outDir, "pinned"), { recursive: true });
  writeTraceSet(pinnedSet, join(outDir, "pinned"));
  return {
    traces: traces.length,
    definitions: set.definitions.size,
    solutions: set.solutions.size,
    ranked_definitions: Object.keys(table.index).length,
    ranked_keys: Object.values(table.index).reduce((a, k) => a + Object.keys(k).length, 0),
    pinned: Object.keys(pinned.solutions).length,
  };
}

/** Replaces `dest` with a copy of `src` (through a sibling folder renamed into place). */
export function publishCopy(src: string, dest: string): void {
  const tmp = `${dest}.tmp-${Deno.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(dirname(dest), { recursive: true });
  cpSync(src, tmp, { recursive: true });
  if (existsSync(dest)) rmSync(dest, { recursive: true, force: true });
  renameSync(tmp, dest);
}

/** The stage. */
export const applyStage = defineStage<ApplyParams>({
  name: "apply",
  description: "the ranked apply table and the pinned selection beside a deployable TraceSet",
  policy: "pure",
  params: ApplyParams,
  env: [],
  resource: "cpu",
  module: import.meta.url,
  toolchainFacts: () => ({}),
  plan(ctx) {
    const cells = SOURCES.flatMap((s) => sorted(ctx.upstream[s]));
    const inputs: Record<string, string> = {};
    for (const s of SOURCES) {
      inputs[s] = digestJson(sorted(ctx.upstream[s]).map((c) => [c.id, c.digest]));
    }
    return Promise.resolve([{
      id: "all",
      params: ctx.params,
      inputs,
      payload: { cells } satisfies Payload,
    }]);
  },
  run(job, ctx) {
    const { cells } = job.plan.payload as Payload;
    const summary = writeApplySet(cells, job.outDir, ctx.params, job.log);
    job.setSummary(summary);
    job.log(
      `${summary.traces} traces of ${summary.definitions} definitions: ${summary.ranked_keys} ranked keys ` +
        `over ${summary.ranked_definitions} definitions, ${summary.pinned} pinned`,
    );
    return Promise.resolve();
  },
  publish({ cells, root, log }) {
    if (!cells.length) return;
    publishCopy(cells[0].dir, join(root, PUBLISH_DIR));
    log(`apply set written to ${join(root, PUBLISH_DIR)}`);
  },
});
