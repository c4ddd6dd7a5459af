/**
 * Stages hand FlashInfer objects downstream as TraceSet fragments: each cell's output folder is a
 * small TraceSet (definitions/, workloads/ + blob/, solutions/, traces/). This module merges the
 * fragments of upstream cells into one view, remembering which folder each workload's blobs live in.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type CellResult, type Diagnostic, digestJson, sha256File } from "../engine/mod.ts";
import type { Definition, Solution, Trace, Workload } from "./schema.ts";
import { loadTraceSet } from "./traceset.ts";

/** A workload with the fragment root its safetensors paths are relative to. */
export interface RootedWorkload {
  workload: Workload;
  root: string;
}

/** The merged view of many fragments. First definition/solution of a name wins; later ones are reported. */
export interface MergedFragments {
  definitions: Map<string, Definition>;
  solutions: Map<string, Solution>;
  /** Workloads by definition name, deduplicated by uuid, in fragment order. */
  workloads: Map<string, RootedWorkload[]>;
  traces: Trace[];
  diagnostics: Diagnostic[];
}

/** Loads and merges the fragments of the given cells (missing folders are fine). */
export function mergeFragments(cells: CellResult[]): MergedFragments {
  const out: MergedFragments = {
    definitions: new Map(),
    solutions: new Map(),
    workloads: new Map(),
    traces: [],
    diagnostics: [],
  };
  const seenUuid = new Set<string>();
  const hasContent = (dir: string) =>
    ["definitions", "workloads", "solutions", "traces"].some((d) => existsSync(join(dir, d)));
  const dirs = cells.map((c) => c.dir).filter(hasContent);
  // Definitions first, so every fragment's workloads, solutions and traces can refer to any of them.
  for (const dir of dirs) {
    if (!existsSync(join(dir, "definitions"))) continue;
    const { set, diagnostics } = loadTraceSet(dir);
    out.diagnostics.push(
      ...diagnostics.filter((d) => d.file.startsWith("definitions")).map((d) => ({
        ...d,
        file: join(dir, d.file),
      })),
    );
    for (const [name, def] of set.definitions) {
      const prev = out.definitions.get(name);
      if (prev && digestJson(prev) !== digestJson(def)) {
        out.diagnostics.push({
          level: "warning",
          file: join(dir, set.files.get(`definition:${name}`)!),
          path: "$",
          message:
            `definition "${name}" differs from an earlier one with the same name; the earlier one is used`,
        });
      } else if (!prev) out.definitions.set(name, def);
    }
  }
  const loaded = dirs.map((dir) => ({
    dir,
    ...loadTraceSet(dir, { knownDefinitions: out.definitions }),
  }));
  for (const { dir, set } of loaded) {
    for (const [name, sol] of set.solutions) {
      if (out.solutions.has(name)) {
        out.diagnostics.push({
          level: "warning",
          file: join(dir, set.files.get(`solution:${name}`)!),
          path: "$.name",
          message: `solution "${name}" appears in two fragments; the first is used`,
        });
      } else out.solutions.set(name, sol);
    }
  }
  for (let { dir, set, diagnostics } of loaded) {
    // Traces may belong to solutions of other fragments: load those roots again knowing them all.
    if (existsSync(join(dir, "traces"))) {
      ({ set, diagnostics } = loadTraceSet(dir, {
        knownDefinitions: out.definitions,
        knownSolutions: out.solutions,
      }));
    }
    out.diagnostics.push(
      ...diagnostics.filter((d) => !d.file.startsWith("definitions")).map((d) => ({
        ...d,
        file: join(dir, d.file),
      })),
    );
    for (const [defName, wls] of set.workloads) {
      for (const w of wls) {
        if (seenUuid.has(`${defName}/${w.uuid}`)) continue;
        seenUuid.add(`${defName}/${w.uuid}`);
        out.workloads.set(defName, [...(out.workloads.get(defName) ?? []), {
          workload: w,
          root: dir,
        }]);
      }
    }
    out.traces.push(...set.traces);
  }
  return out;
}

/** Content digest of a workload including the bytes of its blobs, for cell keys. */
export function workloadDigest(w: RootedWorkload): string {
  const blobs: Record<string, string> = {};
  for (const [name, inp] of Object.entries(w.workload.inputs)) {
    if (inp.type === "safetensors") {
      try {
        blobs[name] = sha256File(join(w.root, inp.path));
      } catch {
        blobs[name] = "missing";
      }
    }
  }
  return digestJson({ workload: w.workload, blobs });
}
