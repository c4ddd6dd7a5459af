/**
 * Read and write the FlashInfer TraceSet directory layout:
 *
 *   definitions/<op_type>/<definition>.json
 *   workloads/<op_type>/<definition>.jsonl            one workload-only trace per line
 *   solutions/<author>/<op_type>/<definition>/<solution>.json
 *   traces/<author>/<op_type>/<definition>.jsonl
 *   blob/workloads/<op_type>/<definition>/<definition>_<uuid>.safetensors
 *
 * Loading is depth-agnostic, as flashinfer-bench's is; files whose folder disagrees with their
 * contents, duplicates and dangling references are reported as diagnostics while the rest loads.
 * The writers are canonical: the same objects always produce the same bytes.
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join, relative, sep } from "node:path";
import type { z } from "zod";
import { type Diagnostic, fromZodError } from "../engine/diagnostics.ts";
import {
  type Correctness,
  Definition,
  isWorkloadTrace,
  Solution,
  Trace,
  type Workload,
} from "./schema.ts";

/** A loaded TraceSet. Maps keep file order (paths sorted), so iteration is deterministic. */
export interface TraceSet {
  root: string;
  definitions: Map<string, Definition>;
  /** Workloads by definition name. */
  workloads: Map<string, Workload[]>;
  solutions: Map<string, Solution>;
  /** Traces with a solution and an evaluation. */
  traces: Trace[];
  /** Root-relative file each definition/solution came from, keyed `definition:<name>` etc. */
  files: Map<string, string>;
}

/** Creates an empty TraceSet rooted at `root`. */
export function emptyTraceSet(root: string): TraceSet {
  return {
    root,
    definitions: new Map(),
    workloads: new Map(),
    solutions: new Map(),
    traces: [],
    files: new Map(),
  };
}

// ---------------------------------------------------------------------------------------------
// Paths

/** Root-relative path of a definition file. */
export const definitionPath = (def: Pick<Definition, "op_type" | "name">) =>
  join("definitions", def.op_type, `${def.name}.json`);
/** Root-relative path of a definition's workloads file. */
export const workloadsPath = (opType: string, defName: string) =>
  join("workloads", opType, `${defName}.jsonl`);
/** Root-relative path of a solution file. */
export const solutionPath = (
  sol: Pick<Solution, "author" | "definition" | "name">,
  opType: string,
) => join("solutions", sol.author, opType, sol.definition, `${sol.name}.json`);
/** Root-relative path of an author's traces for a definition. */
export const tracesPath = (author: string, opType: string, defName: string) =>
  join("traces", author, opType, `${defName}.jsonl`);
/** Root-relative path of a workload's safetensors blob, as flashinfer-bench writes it. */
export const blobPath = (opType: string, defName: string, uuid: string) =>
  join("blob", "workloads", opType, defName, `${defName}_${uuid}.safetensors`);

// ---------------------------------------------------------------------------------------------
// Canonical serialisation

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
  return {
    axes: w.axes,
    inputs: mapValues(w.inputs, (i) => ordered(i, ["type", "value", "path", "tensor_key"])),
    uuid: w.uuid,
  };
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

/** Writes a file atomically (temp file + rename), creating parent folders. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

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

// ---------------------------------------------------------------------------------------------
// Parsing

/** Result of parsing one object: the value, or diagnostics. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; diagnostics: Diagnostic[] };

function parseWith<T>(schema: z.ZodType<T>, raw: unknown, file: string, line?: number): Parsed<T> {
  const r = schema.safeParse(raw);
  return r.success
    ? { ok: true, value: r.data }
    : { ok: false, diagnostics: fromZodError(r.error, file, line) };
}

function parseJsonText(text: string, file: string, line?: number): Parsed<unknown> {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    const msg = (e as Error).message.replace(/^JSON\.parse: /, "");
    return {
      ok: false,
      diagnostics: [{ level: "error", file, line, path: "$", message: `malformed JSON: ${msg}` }],
    };
  }
}

/** Parses a definition file's text. */
export function parseDefinition(text: string, file: string): Parsed<Definition> {
  const j = parseJsonText(text, file);
  return j.ok ? parseWith(Definition, j.value, file) : j;
}

/** Parses a solution file's text. */
export function parseSolution(text: string, file: string): Parsed<Solution> {
  const j = parseJsonText(text, file);
  return j.ok ? parseWith(Solution, j.value, file) : j;
}

/** Parses a JSONL file of traces, skipping blank lines; every bad line gets its diagnostics. */
export function parseJsonl(
  text: string,
  file: string,
): { traces: Array<[number, Trace]>; diagnostics: Diagnostic[] } {
  const traces: Array<[number, Trace]> = [];
  const diagnostics: Diagnostic[] = [];
  text.split("\n").forEach((raw, i) => {
    if (!raw.trim()) return;
    const j = parseJsonText(raw, file, i + 1);
    const p = j.ok ? parseWith(Trace, j.value, file, i + 1) : j;
    if (p.ok) traces.push([i + 1, p.value]);
    else diagnostics.push(...p.diagnostics);
  });
  return { traces, diagnostics };
}

/** Lists files under `dir` with the given suffix, recursively, sorted by path. */
export function listFiles(dir: string, suffix: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (
      const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name < b.name ? -1 : 1)
    ) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name.endsWith(suffix)) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** Options for loading. */
export interface LoadOptions {
  /** Check that every safetensors input's blob file exists (flashinfer-bench's validator does). */
  checkBlobs?: boolean;
  /**
   * Definitions that live outside this root (a fragment's workloads may belong to definitions of
   * another fragment): references to them are not dangling. They are not added to the set.
   */
  knownDefinitions?: Map<string, Definition>;
  /** Likewise for solutions that traces of this root refer to. */
  knownSolutions?: Map<string, Solution>;
}

/**
 * Loads a TraceSet. Never throws for bad content: every problem becomes a diagnostic naming the
 * file, the JSON path and the reason, and every object that parses is kept.
 */
export function loadTraceSet(
  root: string,
  opts: LoadOptions = {},
): { set: TraceSet; diagnostics: Diagnostic[] } {
  const set = emptyTraceSet(root);
  const diags: Diagnostic[] = [];
  const rel = (p: string) => relative(root, p);
  const err = (file: string, path: string, message: string, line?: number) =>
    diags.push({ level: "error", file, line, path, message });
  const parts = (p: string) => rel(p).split(sep);
  const read = (p: string) => {
    try {
      return readFileSync(p, "utf8");
    } catch (e) {
      err(rel(p), "$", `cannot read: ${(e as Error).message}`);
      return null;
    }
  };

  for (const file of listFiles(join(root, "definitions"), ".json")) {
    const text = read(file);
    if (text === null) continue;
    const p = parseDefinition(text, rel(file));
    if (!p.ok) {
      diags.push(...p.diagnostics);
      continue;
    }
    const def = p.value;
    const segs = parts(file);
    if (basename(file, ".json") !== def.name) {
      err(rel(file), "$.name", `name "${def.name}" does not match the file name`);
    }
    if (segs.length === 3 && segs[1] !== def.op_type) {
      err(
        rel(file),
        "$.op_type",
        `op_type "${def.op_type}" but the file is in folder "${segs[1]}"`,
      );
    }
    if (set.definitions.has(def.name)) {
      err(
        rel(file),
        "$.name",
        `duplicate definition "${def.name}" (also in ${set.files.get(`definition:${def.name}`)})`,
      );
      continue;
    }
    set.definitions.set(def.name, def);
    set.files.set(`definition:${def.name}`, rel(file));
  }

  const lookup = (name: string) => set.definitions.get(name) ?? opts.knownDefinitions?.get(name);
  for (const file of listFiles(join(root, "solutions"), ".json")) {
    const text = read(file);
    if (text === null) continue;
    const p = parseSolution(text, rel(file));
    if (!p.ok) {
      diags.push(...p.diagnostics);
      continue;
    }
    const sol = p.value;
    const segs = parts(file);
    if (basename(file, ".json") !== sol.name) {
      err(rel(file), "$.name", `name "${sol.name}" does not match the file name`);
    }
    if (segs.length === 5) {
      if (segs[1] !== sol.author) {
        err(rel(file), "$.author", `author "${sol.author}" but the folder is "${segs[1]}"`);
      }
      if (segs[3] !== sol.definition) {
        err(
          rel(file),
          "$.definition",
          `definition "${sol.definition}" but the folder is "${segs[3]}"`,
        );
      }
      const def = lookup(sol.definition);
      if (def && segs[2] !== def.op_type) {
        err(rel(file), "$.definition", `op_type "${def.op_type}" but the folder is "${segs[2]}"`);
      }
    }
    if (!set.definitions.has(sol.definition)) {
      err(
        rel(file),
        "$.definition",
        `definition "${sol.definition}" does not exist in this TraceSet`,
      );
    }
    if (set.solutions.has(sol.name)) {
      err(
        rel(file),
        "$.name",
        `duplicate solution "${sol.name}" (also in ${set.files.get(`solution:${sol.name}`)})`,
      );
      continue;
    }
    set.solutions.set(sol.name, sol);
    set.files.set(`solution:${sol.name}`, rel(file));
  }

  const checkFolder = (file: string, line: number, t: Trace, opIndex: number) => {
    const segs = parts(file);
    const def = lookup(t.definition);
    if (!def) {
      err(
        rel(file),
        "$.definition",
        `definition "${t.definition}" does not exist in this TraceSet`,
        line,
      );
      return false;
    }
    if (basename(file, ".jsonl") !== t.definition) {
      err(
        rel(file),
        "$.definition",
        `definition "${t.definition}" does not match the file name`,
        line,
      );
    }
    if (segs.length === opIndex + 2 && segs[opIndex] !== def.op_type) {
      err(
        rel(file),
        "$.definition",
        `op_type "${def.op_type}" but the file is in folder "${segs[opIndex]}"`,
        line,
      );
    }
    return true;
  };

  const seenUuids = new Map<string, Set<string>>();
  for (const file of listFiles(join(root, "workloads"), ".jsonl")) {
    const text = read(file);
    if (text === null) continue;
    const { traces, diagnostics } = parseJsonl(text, rel(file));
    diags.push(...diagnostics);
    for (const [line, t] of traces) {
      if (!isWorkloadTrace(t)) {
        err(
          rel(file),
          "$.solution",
          "a workloads file may only hold workload traces (solution and evaluation null)",
          line,
        );
        continue;
      }
      if (!checkFolder(file, line, t, 1)) continue;
      const uuids = seenUuids.get(t.definition) ?? new Set();
      if (uuids.has(t.workload.uuid)) {
        err(rel(file), "$.workload.uuid", `duplicate workload uuid "${t.workload.uuid}"`, line);
        continue;
      }
      uuids.add(t.workload.uuid);
      seenUuids.set(t.definition, uuids);
      set.workloads.set(t.definition, [...(set.workloads.get(t.definition) ?? []), t.workload]);
      if (opts.checkBlobs) {
        for (const [name, inp] of Object.entries(t.workload.inputs)) {
          if (inp.type === "safetensors" && !existsSync(join(root, inp.path))) {
            err(
              rel(file),
              `$.workload.inputs.${name}.path`,
              `blob file "${inp.path}" does not exist`,
              line,
            );
          }
        }
      }
    }
  }

  for (const file of listFiles(join(root, "traces"), ".jsonl")) {
    const text = read(file);
    if (text === null) continue;
    const { traces, diagnostics } = parseJsonl(text, rel(file));
    diags.push(...diagnostics);
    for (const [line, t] of traces) {
      if (isWorkloadTrace(t) || t.solution === null || t.evaluation === null) {
        err(
          rel(file),
          "$.evaluation",
          "a traces file needs traces with both a solution and an evaluation",
          line,
        );
        continue;
      }
      if (!checkFolder(file, line, t, 2)) continue;
      const sol = set.solutions.get(t.solution) ?? opts.knownSolutions?.get(t.solution);
      if (!sol) {
        err(
          rel(file),
          "$.solution",
          `solution "${t.solution}" does not exist in this TraceSet`,
          line,
        );
        continue;
      }
      const segs = parts(file);
      if (segs.length === 4 && segs[1] !== sol.author) {
        err(
          rel(file),
          "$.solution",
          `solution author "${sol.author}" but the folder is "${segs[1]}"`,
          line,
        );
      }
      set.traces.push(t);
    }
  }
  return { set, diagnostics: diags };
}
