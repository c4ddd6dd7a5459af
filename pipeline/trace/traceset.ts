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
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, join, relative, sep } from "node:path";
import type { z } from "zod";
import { type Diagnostic, fromZodError, writeFileAtomic } from "../engine/mod.ts";
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
  const loader = new TraceSetLoader(root, opts);
  // Definitions first, then solutions: later folders are checked against what earlier ones held.
  loader.loadDefinitions();
  loader.loadSolutions();
  loader.loadWorkloads();
  loader.loadTraces();
  return { set: loader.set, diagnostics: loader.diagnostics };
}

/** The state of one `loadTraceSet`: the set being filled and the diagnostics, in file order. */
class TraceSetLoader {
  readonly set: TraceSet;
  readonly diagnostics: Diagnostic[] = [];

  constructor(private readonly root: string, private readonly opts: LoadOptions) {
    this.set = emptyTraceSet(root);
  }

  /** Loads definitions/: each must match its file name and op_type folder, names unique. */
  loadDefinitions(): void {
    for (const file of listFiles(join(this.root, "definitions"), ".json")) {
      const text = this.read(file);
      if (text === null) continue;
      const p = parseDefinition(text, this.rel(file));
      if (!p.ok) {
        this.diagnostics.push(...p.diagnostics);
        continue;
      }
      this.addDefinition(file, p.value);
    }
  }

  private addDefinition(file: string, def: Definition): void {
    const rel = this.rel(file);
    const segs = this.parts(file);
    if (basename(file, ".json") !== def.name) {
      this.err(rel, "$.name", `name "${def.name}" does not match the file name`);
    }
    if (segs.length === 3 && segs[1] !== def.op_type) {
      this.err(rel, "$.op_type", `op_type "${def.op_type}" but the file is in folder "${segs[1]}"`);
    }
    if (this.set.definitions.has(def.name)) {
      const other = this.set.files.get(`definition:${def.name}`);
      this.err(rel, "$.name", `duplicate definition "${def.name}" (also in ${other})`);
      return;
    }
    this.set.definitions.set(def.name, def);
    this.set.files.set(`definition:${def.name}`, rel);
  }

  /** Loads solutions/: each must match its folders and name a definition of this set. */
  loadSolutions(): void {
    for (const file of listFiles(join(this.root, "solutions"), ".json")) {
      const text = this.read(file);
      if (text === null) continue;
      const p = parseSolution(text, this.rel(file));
      if (!p.ok) {
        this.diagnostics.push(...p.diagnostics);
        continue;
      }
      this.addSolution(file, p.value);
    }
  }

  private addSolution(file: string, sol: Solution): void {
    const rel = this.rel(file);
    if (basename(file, ".json") !== sol.name) {
      this.err(rel, "$.name", `name "${sol.name}" does not match the file name`);
    }
    this.checkSolutionFolders(file, sol);
    if (!this.set.definitions.has(sol.definition)) {
      this.err(
        rel,
        "$.definition",
        `definition "${sol.definition}" does not exist in this TraceSet`,
      );
    }
    if (this.set.solutions.has(sol.name)) {
      const other = this.set.files.get(`solution:${sol.name}`);
      this.err(rel, "$.name", `duplicate solution "${sol.name}" (also in ${other})`);
      return;
    }
    this.set.solutions.set(sol.name, sol);
    this.set.files.set(`solution:${sol.name}`, rel);
  }

  /** solutions/<author>/<op_type>/<definition>/<solution>.json: each folder must agree. */
  private checkSolutionFolders(file: string, sol: Solution): void {
    const segs = this.parts(file);
    if (segs.length !== 5) return; // a depth-agnostic layout has no folders to check
    const rel = this.rel(file);
    if (segs[1] !== sol.author) {
      this.err(rel, "$.author", `author "${sol.author}" but the folder is "${segs[1]}"`);
    }
    if (segs[3] !== sol.definition) {
      this.err(
        rel,
        "$.definition",
        `definition "${sol.definition}" but the folder is "${segs[3]}"`,
      );
    }
    const def = this.lookup(sol.definition);
    if (def && segs[2] !== def.op_type) {
      this.err(rel, "$.definition", `op_type "${def.op_type}" but the folder is "${segs[2]}"`);
    }
  }

  /** Loads workloads/: workload-only traces of known definitions, uuids unique per definition. */
  loadWorkloads(): void {
    const seenUuids = new Map<string, Set<string>>();
    for (const file of listFiles(join(this.root, "workloads"), ".jsonl")) {
      for (const [line, t] of this.readTraces(file)) {
        if (!isWorkloadTrace(t)) {
          this.err(
            this.rel(file),
            "$.solution",
            "a workloads file may only hold workload traces (solution and evaluation null)",
            line,
          );
          continue;
        }
        if (!this.checkTraceFolder(file, line, t, 1)) continue;
        const uuids = seenUuids.get(t.definition) ?? new Set();
        if (uuids.has(t.workload.uuid)) {
          const message = `duplicate workload uuid "${t.workload.uuid}"`;
          this.err(this.rel(file), "$.workload.uuid", message, line);
          continue;
        }
        uuids.add(t.workload.uuid);
        seenUuids.set(t.definition, uuids);
        const wls = this.set.workloads.get(t.definition) ?? [];
        this.set.workloads.set(t.definition, [...wls, t.workload]);
        if (this.opts.checkBlobs) this.checkBlobsExist(file, line, t.workload);
      }
    }
  }

  private checkBlobsExist(file: string, line: number, w: Workload): void {
    for (const [name, inp] of Object.entries(w.inputs)) {
      if (inp.type === "safetensors" && !existsSync(join(this.root, inp.path))) {
        const message = `blob file "${inp.path}" does not exist`;
        this.err(this.rel(file), `$.workload.inputs.${name}.path`, message, line);
      }
    }
  }

  /** Loads traces/: evaluated traces of known definitions and solutions, in author folders. */
  loadTraces(): void {
    for (const file of listFiles(join(this.root, "traces"), ".jsonl")) {
      for (const [line, t] of this.readTraces(file)) {
        if (isWorkloadTrace(t) || t.solution === null || t.evaluation === null) {
          this.err(
            this.rel(file),
            "$.evaluation",
            "a traces file needs traces with both a solution and an evaluation",
            line,
          );
          continue;
        }
        if (!this.checkTraceFolder(file, line, t, 2)) continue;
        if (!this.checkTraceSolution(file, line, t.solution)) continue;
        this.set.traces.push(t);
      }
    }
  }

  /** The trace's solution must exist; traces/<author>/... must be its author's folder. */
  private checkTraceSolution(file: string, line: number, solution: string): boolean {
    const sol = this.set.solutions.get(solution) ?? this.opts.knownSolutions?.get(solution);
    if (!sol) {
      const message = `solution "${solution}" does not exist in this TraceSet`;
      this.err(this.rel(file), "$.solution", message, line);
      return false;
    }
    const segs = this.parts(file);
    if (segs.length === 4 && segs[1] !== sol.author) {
      const message = `solution author "${sol.author}" but the folder is "${segs[1]}"`;
      this.err(this.rel(file), "$.solution", message, line);
    }
    return true;
  }

  /**
   * Checks a trace line against its file: the definition must exist (false when not, and the
   * trace is dropped), be the file's name, and its op_type the folder at `opIndex`.
   */
  private checkTraceFolder(file: string, line: number, t: Trace, opIndex: number): boolean {
    const rel = this.rel(file);
    const def = this.lookup(t.definition);
    if (!def) {
      const message = `definition "${t.definition}" does not exist in this TraceSet`;
      this.err(rel, "$.definition", message, line);
      return false;
    }
    if (basename(file, ".jsonl") !== t.definition) {
      const message = `definition "${t.definition}" does not match the file name`;
      this.err(rel, "$.definition", message, line);
    }
    const segs = this.parts(file);
    if (segs.length === opIndex + 2 && segs[opIndex] !== def.op_type) {
      const message = `op_type "${def.op_type}" but the file is in folder "${segs[opIndex]}"`;
      this.err(rel, "$.definition", message, line);
    }
    return true;
  }

  /** A JSONL file's parsed traces with their line numbers; bad lines become diagnostics. */
  private readTraces(file: string): Array<[number, Trace]> {
    const text = this.read(file);
    if (text === null) return [];
    const { traces, diagnostics } = parseJsonl(text, this.rel(file));
    this.diagnostics.push(...diagnostics);
    return traces;
  }

  /** A definition of this set, or one known from outside it (see `LoadOptions`). */
  private lookup(name: string): Definition | undefined {
    return this.set.definitions.get(name) ?? this.opts.knownDefinitions?.get(name);
  }

  private read(p: string): string | null {
    try {
      return readFileSync(p, "utf8");
    } catch (e) {
      this.err(this.rel(p), "$", `cannot read: ${(e as Error).message}`);
      return null;
    }
  }

  private err(file: string, path: string, message: string, line?: number): void {
    this.diagnostics.push({ level: "error", file, line, path, message });
  }

  private rel(p: string): string {
    return relative(this.root, p);
  }

  private parts(p: string): string[] {
    return this.rel(p).split(sep);
  }
}
