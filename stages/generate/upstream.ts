/** What the generate stage reads from its upstream cells (the definitions and extract stages). */
import { digestJson, type PlanContext } from "../../pipeline/engine/mod.ts";
import { type Definition, loadTraceSet, type Workload } from "../../pipeline/trace/mod.ts";
import type { RunContext } from "./corpus.ts";
import type { GenerateParams } from "./params.ts";

/** The run's definitions and workloads, with digests of the cells they came from. */
export interface Upstream extends RunContext {
  workloads: Map<string, Workload[]>;
  /** The fragment root each workload's blob paths are relative to, by `definition NUL uuid`. */
  workloadRoots: Map<string, string>;
  definitionDigest: string;
  extractDigest: string;
}

/**
 * Merges the upstream cells' fragments. A definition's first occurrence wins (definitions cells
 * come before extract cells); workloads accumulate in cell order.
 */
export function loadUpstream(ctx: PlanContext<GenerateParams>): Upstream {
  const definitions = new Map<string, Definition>();
  const workloads = new Map<string, Workload[]>();
  const workloadRoots = new Map<string, string>();
  const defCells = ctx.upstream.definitions ?? [];
  const exCells = ctx.upstream.extract ?? [];
  for (const cell of [...defCells, ...exCells]) {
    const { set } = loadTraceSet(cell.dir);
    for (const [n, d] of set.definitions) if (!definitions.has(n)) definitions.set(n, d);
    for (const [n, ws] of set.workloads) {
      workloads.set(n, [...(workloads.get(n) ?? []), ...ws]);
      for (const w of ws) {
        const k = workloadKey(n, w.uuid);
        if (!workloadRoots.has(k)) workloadRoots.set(k, cell.dir);
      }
    }
  }
  const workloadUuids = new Map(
    [...workloads].map(([n, ws]) => [n, new Set(ws.map((w) => w.uuid))]),
  );
  return {
    definitions,
    workloads,
    workloadRoots,
    workloadUuids,
    definitionDigest: digestJson(defCells.map((c) => c.digest)),
    extractDigest: digestJson(exCells.map((c) => c.digest)),
  };
}

/** The key of a workload in `Upstream.workloadRoots`. */
export const workloadKey = (definition: string, uuid: string) => `${definition}\u0000${uuid}`;
