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
 * Files are read as strict UTF-8 (text.ts), and nothing outside the root is read: a section folder
 * or blob path leading outside it is reported, not followed. The canonical writers are in write.ts.
 */
import { existsSync, readdirSync } from "node:fs";
import { basename, join, relative, sep } from "node:path";
import type { z } from "zod";
import { type Diagnostic, fromZodError } from "../engine/mod.ts";
import { Definition, isWorkloadTrace, Solution, Trace, type Workload } from "./schema.ts";
import { readUtf8File, Utf8Error } from "./text.ts";
import { blobPathEscapes } from "./confine.ts";

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
  /**
   * Where each loaded workload and trace came from (root-relative file, 1-based line), keyed by
   * the object itself; filled by `loadTraceSet`, absent on sets built in memory.
   */
  origins?: Map<Workload | Trace, { file: string; line: number }>;
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
// Parsing

/** Result of parsing one object: the value, or diagnostics. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; diagnostics: Diagnostic[] };

/** What an upgrade gives: the rewritten raw object, or why it cannot be (legacy.ts's Upgrade). */
export type UpgradeResult =
  | { ok: true; value: unknown }
  | { ok: false; reason: string; path?: string };

/** Rewrites a raw object before it is checked (the draft upgrade of legacy.ts). */
export type Upgrader = (raw: unknown) => UpgradeResult;

/**
 * How to read an older form of the format, object by object. Passed in rather than imported, so
 * that a stage loading a TraceSet is not keyed on the upgrade's code (`DRAFT_UPGRADERS`).
 */
export interface Upgraders {
  definition: Upgrader;
  /** `outputs`: the output names of the solution's definition, when it is known. */
  solution: (raw: unknown, outputs?: string[]) => UpgradeResult;
  /** A fresh upgrader per JSONL file (it numbers repeated identical workloads). */
  traceLine: () => Upgrader;
}

function parseWith<T>(
  schema: z.ZodType<T>,
  raw: unknown,
  file: string,
  line?: number,
  upgrade?: Upgrader,
): Parsed<T> {
  if (upgrade) {
    const up = upgrade(raw);
    if (!up.ok) {
      const d: Diagnostic = { level: "error", file, line, path: up.path ?? "$", message: "" };
      return { ok: false, diagnostics: [{ ...d, message: `cannot upgrade: ${up.reason}` }] };
    }
    raw = up.value;
  }
  // reportInput: a diagnostic can then show the offending value (an unknown dtype, say).
  const r = schema.safeParse(raw, { reportInput: true });
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

/**
 * JSON text's value; where the text is malformed, undefined, with the one error diagnostic every
 * reader of the format gives (`malformed JSON: …`, naming `file` and `line`) pushed to `diags`.
 */
export function parseJsonOrDiagnose(
  text: string,
  file: string,
  diags: Diagnostic[],
  line?: number,
): unknown {
  const j = parseJsonText(text, file, line);
  if (!j.ok) diags.push(...j.diagnostics);
  return j.ok ? j.value : undefined;
}

/** Parses a definition file's text, upgrading it first when `upgrade` is given. */
export function parseDefinition(
  text: string,
  file: string,
  upgrade?: Upgrader,
): Parsed<Definition> {
  const j = parseJsonText(text, file);
  return j.ok ? parseWith(Definition, j.value, file, undefined, upgrade) : j;
}

/** Parses a solution file's text, upgrading it first when `upgrade` is given. */
export function parseSolution(text: string, file: string, upgrade?: Upgrader): Parsed<Solution> {
  const j = parseJsonText(text, file);
  return j.ok ? parseWith(Solution, j.value, file, undefined, upgrade) : j;
}

/**
 * Parses a JSONL file of traces, skipping blank lines; every bad line gets its diagnostics. With
 * `upgrade`, each line is upgraded first (one upgrader per file: it numbers repeated workloads).
 */
export function parseJsonl(
  text: string,
  file: string,
  upgrade?: Upgrader,
): { traces: Array<[number, Trace]>; diagnostics: Diagnostic[] } {
  const traces: Array<[number, Trace]> = [];
  const diagnostics: Diagnostic[] = [];
  text.split("\n").forEach((raw, i) => {
    if (!raw.trim()) return;
    const j = parseJsonText(raw, file, i + 1);
    const p = j.ok ? parseWith(Trace, j.value, file, i + 1, upgrade) : j;
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
  /**
   * Read an older form of the format (the 2025 draft: legacy.ts's `DRAFT_UPGRADERS`): every
   * object is upgraded in memory before it is checked, and workload files may be named
   * `<definition>.workload.jsonl`, as the draft named them.
   */
  upgrade?: Upgraders;
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
  /** The one diagnostic per (file, unknown definition), with how many lines named it. */
  private readonly dangling = new Map<string, { diagnostic: Diagnostic; lines: number }>();

  constructor(private readonly root: string, private readonly opts: LoadOptions) {
    this.set = emptyTraceSet(root);
    this.set.origins = new Map();
  }

  /**
   * The files of one section folder, or none (with a diagnostic) when the folder is a link
   * leading outside the root: a TraceSet is read from inside itself only.
   */
  private sectionFiles(section: string, suffix: string): string[] {
    const dir = join(this.root, section);
    if (!existsSync(dir)) return [];
    const escape = blobPathEscapes(this.root, section);
    if (escape) {
      this.err(section, "$", `folder ${section}/ ${escape}; not read`);
      return [];
    }
    return listFiles(dir, suffix);
  }

  /** Loads definitions/: each must match its file name and op_type folder, names unique. */
  loadDefinitions(): void {
    const upgrade = this.opts.upgrade?.definition;
    for (const file of this.sectionFiles("definitions", ".json")) {
      const text = this.read(file);
      if (text === null) continue;
      const p = parseDefinition(text, this.rel(file), upgrade);
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
    // A draft solution's dict returns are rewritten to its definition's outputs, when known.
    const solution = this.opts.upgrade?.solution;
    const upgrade: Upgrader | undefined = solution && ((raw) => {
      const name = (raw as { definition?: unknown } | null)?.definition;
      const def = typeof name === "string" ? this.lookup(name) : undefined;
      return solution(raw, def ? Object.keys(def.outputs) : undefined);
    });
    for (const file of this.sectionFiles("solutions", ".json")) {
      const text = this.read(file);
      if (text === null) continue;
      const p = parseSolution(text, this.rel(file), upgrade);
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
    for (const file of this.sectionFiles("workloads", ".jsonl")) {
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
        this.set.origins!.set(t.workload, { file: this.rel(file), line });
        if (this.opts.checkBlobs) this.checkBlobsExist(file, line, t.workload);
      }
    }
  }

  /** Each blob must stay inside the root (never probed outside it) and exist. */
  private checkBlobsExist(file: string, line: number, w: Workload): void {
    for (const [name, inp] of Object.entries(w.inputs)) {
      if (inp.type !== "safetensors") continue;
      const escape = blobPathEscapes(this.root, inp.path);
      const message = escape
        ? `blob path "${inp.path}" ${escape}`
        : existsSync(join(this.root, inp.path))
        ? null
        : `blob file "${inp.path}" does not exist`;
      if (message) this.err(this.rel(file), `$.workload.inputs.${name}.path`, message, line);
    }
  }

  /** Loads traces/: evaluated traces of known definitions and solutions, in author folders. */
  loadTraces(): void {
    for (const file of this.sectionFiles("traces", ".jsonl")) {
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
        this.set.origins!.set(t, { file: this.rel(file), line });
      }
    }
  }

  /** The trace's solution must exist; traces/<author>/... must be its author's folder. */
  private checkTraceSolution(file: string, line: number, solution: string): boolean {
    const sol = this.set.solutions.get(solution) ?? this.opts.knownSolutions?.get(solution);
    if (!sol) {
      this.reportDangling(this.rel(file), line, "solution", solution);
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
      this.reportDangling(rel, line, "definition", t.definition);
      return false;
    }
    // The draft named its workload files `<definition>.workload.jsonl`.
    const name = basename(file, ".jsonl");
    const stem = this.opts.upgrade ? name.replace(/\.workload$/, "") : name;
    if (stem !== t.definition) {
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

  /**
   * One diagnostic per file and unknown definition (or solution), at its first line, counting
   * the others: a file of workloads for a missing definition is one problem, not one per line.
   */
  private reportDangling(
    rel: string,
    line: number,
    kind: "definition" | "solution",
    name: string,
  ): void {
    const key = `${rel}\u0000${kind}\u0000${name}`;
    const base = `${kind} "${name}" does not exist in this TraceSet`;
    const seen = this.dangling.get(key);
    if (!seen) {
      const diagnostic: Diagnostic = {
        level: "error",
        file: rel,
        line,
        path: `$.${kind}`,
        message: base,
      };
      this.diagnostics.push(diagnostic);
      this.dangling.set(key, { diagnostic, lines: 1 });
      return;
    }
    seen.lines++;
    seen.diagnostic.message = `${base}; ${seen.lines} lines of this file name it, this one first`;
  }

  /** A JSONL file's parsed traces with their line numbers; bad lines become diagnostics. */
  private readTraces(file: string): Array<[number, Trace]> {
    const text = this.read(file);
    if (text === null) return [];
    const upgrade = this.opts.upgrade?.traceLine();
    const { traces, diagnostics } = parseJsonl(text, this.rel(file), upgrade);
    this.diagnostics.push(...diagnostics);
    return traces;
  }

  /** A definition of this set, or one known from outside it (see `LoadOptions`). */
  private lookup(name: string): Definition | undefined {
    return this.set.definitions.get(name) ?? this.opts.knownDefinitions?.get(name);
  }

  private read(p: string): string | null {
    try {
      return readUtf8File(p);
    } catch (e) {
      if (e instanceof Utf8Error) this.err(this.rel(p), "$", e.message, e.line);
      else this.err(this.rel(p), "$", `cannot read: ${(e as Error).message}`);
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
