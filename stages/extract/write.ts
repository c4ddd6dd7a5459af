/**
 * Adds engine-dump workloads to the built ones, then writes every definition's workloads JSONL and
 * blobs and checks each workload against its definition (constraints evaluated on the blobs).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { type CellResult, writeFileAtomic } from "../../pipeline/engine/mod.ts";
import {
  checkWorkload,
  formatJsonl,
  loadTraceSet,
  type Workload,
  workloadsPath,
} from "../../pipeline/trace/mod.ts";
import type { DefinitionWorkloads } from "./build.ts";

/**
 * Adds the engine dumps' workloads of the definitions this model uses (the others are skipped, and
 * their definitions' names added to `skipped` when given); returns how many were added.
 */
export function mergeDumpWorkloads(
  dumps: CellResult[],
  byDef: Map<string, DefinitionWorkloads>,
  skipped?: Set<string>,
): number {
  let added = 0;
  for (const d of dumps) {
    const { set } = loadTraceSet(d.dir);
    for (const [name, wls] of set.workloads) {
      const e = byDef.get(name);
      if (!e) {
        skipped?.add(name);
        continue;
      }
      for (const w of wls) {
        const blobs = new Set(
          Object.values(w.inputs).flatMap((i) => (i.type === "safetensors" ? [i.path] : [])),
        );
        const blob = [...blobs][0];
        e.built.set(w.uuid, {
          workload: w,
          blob: blob
            ? { path: blob.replace(/^\.\//, ""), bytes: readFileSync(join(d.dir, blob)) }
            : undefined,
        });
        added++;
      }
    }
  }
  return added;
}

/**
 * Writes each definition's blobs and workloads file under `out` (definitions in name order), then
 * checks every workload; a problem throws, unevaluated constraints are returned (sorted) as
 * `<definition>: <constraint>`.
 */
export function writeAndCheckWorkloads(
  byDef: Map<string, DefinitionWorkloads>,
  out: string,
): { workloads: number; unsupportedConstraints: string[] } {
  const unsupported = new Set<string>();
  let workloads = 0;
  for (
    const { def, built } of [...byDef.values()].sort((a, b) => (a.def.name < b.def.name ? -1 : 1))
  ) {
    const ws: Workload[] = [];
    for (const b of [...built.values()]) {
      if (b.blob) {
        mkdirSync(dirname(join(out, b.blob.path)), { recursive: true });
        writeFileSync(join(out, b.blob.path), b.blob.bytes);
      }
      ws.push(b.workload);
    }
    writeFileAtomic(
      join(out, workloadsPath(def.op_type, def.name)),
      formatJsonl(
        ws.map((w) => ({ definition: def.name, workload: w, solution: null, evaluation: null })),
      ),
    );
    for (const w of ws) {
      const chk = checkWorkload(def, w, out);
      if (chk.problems.length) {
        throw new Error(`extract: workload ${w.uuid} of ${def.name}: ${chk.problems.join("; ")}`);
      }
      for (const u of chk.unsupported) unsupported.add(`${def.name}: ${u}`);
    }
    workloads += ws.length;
  }
  return { workloads, unsupportedConstraints: [...unsupported].sort() };
}
