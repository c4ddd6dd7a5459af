/**
 * The canonical writers of the FlashInfer Trace format: the same objects always produce the same
 * bytes, with flashinfer-bench's key order, and a field that is absent stays absent (so a file
 * without tracepipe's optional extensions is written exactly as flashinfer-bench writes it).
 */
import { join } from "node:path";
import { writeFileAtomic } from "../engine/mod.ts";
import type { Correctness, Definition, Solution, Trace, Workload } from "./schema.ts";
import {
  definitionPath,
  solutionPath,
  type TraceSet,
  tracesPath,
  workloadsPath,
} from "./traceset.ts";

function ordered(obj: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}

const mapValues = <T>(rec: Record<string, T>, f: (v: T) => unknown) =>
  Object.fromEntries(Object.entries(rec).map(([k, v]) => [k, f(v)]));

const specialFloat = (v: number): number | string =>
  Number.isNaN(v) ? "NaN" : v === Infinity ? "Infinity" : v === -Infinity ? "-Infinity" : v;

function definitionDoc(def: Definition): Record<string, unknown> {
  return ordered({
    ...def,
    description: def.description ?? undefined,
    axes: mapValues(
      def.axes,
      (a) =>
        ordered({ ...a, description: a.description ?? undefined }, [
          "type",
          "value",
          "description",
        ]),
    ),
    inputs: mapValues(def.inputs, tensorDoc),
    outputs: mapValues(def.outputs, tensorDoc),
  }, [
    "name",
    "description",
    "op_type",
    "tags",
    "axes",
    "constraints",
    "inputs",
    "outputs",
    "reference",
  ]);
}

function tensorDoc(t: Definition["inputs"][string]) {
  return ordered({ ...t, description: t.description ?? undefined }, [
    "shape",
    "dtype",
    "description",
  ]);
}

function solutionDoc(sol: Solution): Record<string, unknown> {
  return ordered({
    ...sol,
    description: sol.description ?? undefined,
    spec: ordered(sol.spec, [
      "language",
      "target_hardware",
      "entry_point",
      "dependencies",
      "destination_passing_style",
      "binding",
    ]),
    sources: sol.sources.map((s) => ordered(s, ["path", "content"])),
  }, ["name", "definition", "author", "description", "spec", "sources"]);
}

function workloadDoc(w: Workload): Record<string, unknown> {
  // The tolerance extension (schema.ts) follows flashinfer-bench's fields, only where present.
  return ordered({
    ...w,
    inputs: mapValues(w.inputs, (i) => ordered(i, ["type", "value", "path", "tensor_key"])),
  }, ["axes", "inputs", "uuid", "max_atol", "max_rtol", "required_matched_ratio"]);
}

function correctnessDoc(c: Correctness): Record<string, unknown> {
  return ordered({
    max_relative_error: specialFloat(c.max_relative_error),
    max_absolute_error: specialFloat(c.max_absolute_error),
    extra: c.extra ?? undefined,
  }, ["max_relative_error", "max_absolute_error", "extra"]);
}

function traceDoc(t: Trace): Record<string, unknown> {
  const ev = t.evaluation;
  return {
    definition: t.definition,
    workload: workloadDoc(t.workload),
    solution: t.solution,
    evaluation: ev === null ? null : ordered({
      ...ev,
      environment: ordered(ev.environment, ["hardware", "libs"]),
      correctness: ev.correctness ? correctnessDoc(ev.correctness) : undefined,
      performance: ev.performance
        ? ordered(ev.performance, ["latency_ms", "reference_latency_ms", "speedup_factor"])
        : undefined,
    }, ["status", "environment", "timestamp", "log", "correctness", "performance"]),
  };
}

/** Canonical text of a definition file. */
export const formatDefinition = (def: Definition) =>
  JSON.stringify(definitionDoc(def), null, 2) + "\n";
/** Canonical text of a solution file. */
export const formatSolution = (sol: Solution) => JSON.stringify(solutionDoc(sol), null, 2) + "\n";
/** Canonical compact JSON line of a trace (workload-only traces carry explicit nulls). */
export const formatTraceLine = (t: Trace) => JSON.stringify(traceDoc(t));
/** Canonical text of a JSONL file of traces. */
export const formatJsonl = (traces: Trace[]) =>
  traces.map((t) => formatTraceLine(t) + "\n").join("");

/**
 * Writes a whole TraceSet under `root` in the canonical layout. Workloads and traces of one file
 * keep their order; blobs are not touched.
 */
export function writeTraceSet(set: TraceSet, root: string): string[] {
  const written: string[] = [];
  const put = (rel: string, text: string) => {
    writeFileAtomic(join(root, rel), text);
    written.push(rel);
  };
  for (const def of set.definitions.values()) put(definitionPath(def), formatDefinition(def));
  for (const [defName, wls] of set.workloads) {
    const def = set.definitions.get(defName);
    if (!def) throw new Error(`workloads for unknown definition "${defName}"`);
    put(
      workloadsPath(def.op_type, defName),
      formatJsonl(
        wls.map((w) => ({ definition: defName, workload: w, solution: null, evaluation: null })),
      ),
    );
  }
  for (const sol of set.solutions.values()) {
    const def = set.definitions.get(sol.definition);
    if (!def) throw new Error(`solution "${sol.name}" for unknown definition "${sol.definition}"`);
    put(solutionPath(sol, def.op_type), formatSolution(sol));
  }
  const traceFiles = new Map<string, Trace[]>();
  for (const t of set.traces) {
    const def = set.definitions.get(t.definition);
    const sol = t.solution ? set.solutions.get(t.solution) : undefined;
    if (!def || !sol) throw new Error(`trace of "${t.solution}" on "${t.definition}" is dangling`);
    const rel = tracesPath(sol.author, def.op_type, def.name);
    traceFiles.set(rel, [...(traceFiles.get(rel) ?? []), t]);
  }
  for (const [rel, traces] of traceFiles) put(rel, formatJsonl(traces));
  return written;
}
