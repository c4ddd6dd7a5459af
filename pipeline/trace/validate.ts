/**
 * `validate PATH`: checks one file (definition, solution, workloads/traces JSONL, safetensors),
 * a whole TraceSet, or part of one (its definitions/ or workloads/ folder, a subfolder, a file in
 * it), the way flashinfer-bench's validator does (layout, definitions, workloads against their
 * definitions, blobs), plus what `generate` checks before it imports a solution (entry point and
 * signature) and Python's own parse where Python is available. Part of a TraceSet is checked
 * against the rest of it (a workload against its definition), and only its own problems are
 * reported. A folder in the 2025 draft format is said to be one and checked as upgraded.
 * A path where nothing can be checked is an error, never "0 errors".
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, extname, join, resolve, sep } from "node:path";
import type { Diagnostic } from "../engine/mod.ts";
import { DRAFT_UPGRADERS } from "./legacy.ts";
import { decodeSafetensors, SafetensorsError } from "./safetensors.ts";
import type { Trace, Workload } from "./schema.ts";
import { readUtf8File, Utf8Error } from "./text.ts";
import {
  listFiles,
  loadTraceSet,
  parseDefinition,
  parseJsonl,
  parseSolution,
  type TraceSet,
  type Upgrader,
} from "./traceset.ts";
import {
  checkDefinitionsPython,
  checkSolutions,
  draftNote,
  findDraftFile,
  textLooksDraft,
  workingPython,
} from "./validate_checks.ts";
import { checkWorkload } from "./workload_check.ts";

/** What `validate` found: the problems, and one line saying what was checked. */
export interface Validation {
  diagnostics: Diagnostic[];
  summary: string;
}

/** The folders of a TraceSet; a path inside one of them belongs to the TraceSet above it. */
const SECTIONS = ["definitions", "workloads", "solutions", "traces", "blob"];
const NO_PYTHON = " (no Python: references checked for `def run` only, sources not parsed)";

const error = (file: string, message: string, line?: number): Diagnostic => ({
  level: "error",
  file,
  line,
  path: "$",
  message,
});

/** Validates a file or a folder (see the module doc). */
export async function validatePath(path: string): Promise<Validation> {
  path = resolve(path);
  if (!existsSync(path)) {
    return { diagnostics: [error(path, "no such file or directory")], summary: "" };
  }
  const isDir = statSync(path).isDirectory();
  if (!isDir && path.endsWith(".safetensors")) return validateSafetensors(path);
  if (!isDir && ![".json", ".jsonl"].includes(extname(path))) {
    const message = "unknown file kind (expected .json, .jsonl or .safetensors)";
    return { diagnostics: [error(path, message)], summary: "" };
  }
  const place = locate(path, isDir);
  if (place && (isDir || fitsSection(place.scope))) {
    return await validateInTraceSet(path, place.root, place.scope);
  }
  if (!isDir) return await validateLoneFile(path);
  const message = `nothing to validate: no ${SECTIONS.slice(0, 4).join("/, ")}/ folder here ` +
    "or above; give a TraceSet folder, a folder of one, or a file";
  return { diagnostics: [error(path, message)], summary: "" };
}

/**
 * The TraceSet `path` belongs to: a folder holding any section is a root; otherwise the nearest
 * section folder among `path` and its parents marks the root above it. `scope` is the path
 * relative to the root ("" for the whole set).
 */
function locate(path: string, isDir: boolean): { root: string; scope: string } | null {
  if (isDir && SECTIONS.slice(0, 4).some((s) => existsSync(join(path, s)))) {
    return { root: path, scope: "" };
  }
  const segs = path.split(sep);
  for (let i = segs.length - (isDir ? 1 : 2); i >= 1; i--) {
    if (SECTIONS.includes(segs[i])) {
      return { root: segs.slice(0, i).join(sep) || sep, scope: segs.slice(i).join(sep) };
    }
  }
  return null;
}

/** Whether a file's kind is what its section holds (JSON definitions and solutions, else JSONL). */
function fitsSection(scope: string): boolean {
  const section = scope.split(sep)[0];
  const json = scope.endsWith(".json");
  return json ? ["definitions", "solutions"].includes(section) : section !== "blob";
}

function validateSafetensors(path: string): Validation {
  try {
    decodeSafetensors(readFileSync(path));
    return { diagnostics: [], summary: `${path}: valid` };
  } catch (e) {
    const msg = e instanceof SafetensorsError ? e.message : `cannot read: ${(e as Error).message}`;
    return { diagnostics: [error(path, msg)], summary: `${path}: invalid` };
  }
}

/** What a scoped check counted, for the summary. */
interface Counts {
  definitions: number;
  workloads: number;
  solutions: number;
  traces: number;
  blobs: number;
}

/**
 * Validates `scope` (root-relative; "" for all) of the TraceSet at `root`: the whole set is
 * loaded, so references resolve, and the problems of files inside `scope` are reported.
 */
async function validateInTraceSet(path: string, root: string, scope: string): Promise<Validation> {
  const inScope = (f: string) => scope === "" || f === scope || f.startsWith(scope + sep);
  const where = scope === "" ? "" : ` (in the TraceSet ${root})`;
  const jsonlOnly = scope.startsWith(`workloads`) || scope.startsWith(`traces`);
  if (jsonlOnly && !existsSync(join(root, "definitions"))) {
    return validateWithoutDefinitions(path, root, where);
  }
  const draft = findDraftFile(root);
  const upgrade = draft === null ? undefined : DRAFT_UPGRADERS;
  const { set, diagnostics: loaded } = loadTraceSet(root, { upgrade });
  const diagnostics = loaded.filter((d) => inScope(d.file));
  if (draft) diagnostics.unshift(draftNote(scope === "" ? path : root, draft));
  const python = await workingPython();
  const counts: Counts = { definitions: 0, workloads: 0, solutions: 0, traces: 0, blobs: 0 };
  const defs = [...set.definitions.values()].map((def) => ({
    def,
    file: set.files.get(`definition:${def.name}`)!,
  })).filter((d) => inScope(d.file));
  counts.definitions = defs.length;
  const syntax = python ? await checkDefinitionsPython(defs, python) : null;
  diagnostics.push(...syntax ?? []);
  const sols = [...set.solutions.values()].map((sol) => ({
    sol,
    file: set.files.get(`solution:${sol.name}`)!,
    def: set.definitions.get(sol.definition),
  })).filter((s) => inScope(s.file));
  counts.solutions = sols.length;
  diagnostics.push(...await checkSolutions(sols, python));
  counts.workloads = checkWorkloads(set, inScope, diagnostics);
  counts.traces = set.traces.filter((t) => inScope(origin(set, t).file)).length;
  if (scope.startsWith("blob")) counts.blobs = checkBlobFiles(path, root, diagnostics);
  if (Object.values(counts).every((n) => n === 0) && diagnostics.length === (draft ? 1 : 0)) {
    const message = "nothing to validate: no definition, solution, workload or trace file here";
    return { diagnostics: [...diagnostics, error(path, message)], summary: "" };
  }
  const summary = `${path}: ${counts.definitions} definitions, ${counts.workloads} workloads, ` +
    `${counts.solutions} solutions, ${counts.traces} traces` +
    (counts.blobs ? `, ${counts.blobs} blobs` : "") + where + (python ? "" : NO_PYTHON);
  return { diagnostics, summary };
}

function origin(set: TraceSet, o: Workload | Trace): { file: string; line?: number } {
  return set.origins?.get(o) ?? { file: "" };
}

/** Checks the workloads loaded from files in scope against their definitions; returns how many. */
function checkWorkloads(
  set: TraceSet,
  inScope: (f: string) => boolean,
  diagnostics: Diagnostic[],
): number {
  let n = 0;
  for (const [defName, wls] of set.workloads) {
    const def = set.definitions.get(defName)!;
    for (const w of wls) {
      const { file, line } = origin(set, w);
      if (!inScope(file)) continue;
      n++;
      for (const p of checkWorkload(def, w, set.root).located) {
        diagnostics.push({ level: "error", file, line, path: p.path, message: p.message });
      }
    }
  }
  return n;
}

/** Decodes each safetensors file under `dir` (a blob/ folder given on its own); returns how many. */
function checkBlobFiles(dir: string, root: string, diagnostics: Diagnostic[]): number {
  const files = statSync(dir).isDirectory() ? listFiles(dir, ".safetensors") : [];
  for (const f of files) {
    try {
      decodeSafetensors(readFileSync(f));
    } catch (e) {
      diagnostics.push(error(f.slice(root.length + 1), (e as Error).message));
    }
  }
  return files.length;
}

/**
 * Workloads or traces with no definitions/ folder above them: each JSONL file is checked against
 * the schema, and the summary says that is all that could be checked.
 */
function validateWithoutDefinitions(path: string, root: string, where: string): Validation {
  const files = statSync(path).isDirectory()
    ? listFiles(path, ".jsonl")
    : path.endsWith(".jsonl")
    ? [path]
    : [];
  const diagnostics: Diagnostic[] = [];
  let lines = 0;
  for (const f of files) {
    const rel = f.slice(root.length + 1);
    const p = readAndParse(f, rel, (text, upgrade) => {
      const r = parseJsonl(text, rel, upgrade);
      return { diagnostics: r.diagnostics, value: r.traces };
    });
    diagnostics.push(...p.diagnostics);
    lines += p.value?.length ?? 0;
  }
  if (files.length === 0) {
    return { diagnostics: [error(path, "nothing to validate: no JSONL file here")], summary: "" };
  }
  const summary = `${path}: ${lines} lines of ${files.length} JSONL files${where}, checked ` +
    `against the schema only: there is no definitions/ folder in ${root}`;
  return { diagnostics, summary };
}

/**
 * Reads `file` as strict UTF-8 and parses it, upgrading it from the draft format when it is one
 * (with the one-line note). Unreadable text is one diagnostic.
 */
function readAndParse<T>(
  file: string,
  label: string,
  parse: (text: string, upgrade?: Upgrader) => { diagnostics: Diagnostic[]; value?: T },
  upgrader?: () => Upgrader,
): { diagnostics: Diagnostic[]; value?: T } {
  let text: string;
  try {
    text = readUtf8File(file);
  } catch (e) {
    return e instanceof Utf8Error
      ? { diagnostics: [error(label, e.message, e.line)] }
      : { diagnostics: [error(label, `cannot read: ${(e as Error).message}`)] };
  }
  const jsonl = file.endsWith(".jsonl");
  if (!textLooksDraft(text, jsonl)) return parse(text);
  const upgrade = upgrader?.() ?? DRAFT_UPGRADERS.traceLine();
  const r = parse(text, upgrade);
  return { ...r, diagnostics: [draftNote(label, null), ...r.diagnostics] };
}

/** A definition, solution or JSONL file outside any TraceSet: checked on its own. */
async function validateLoneFile(path: string): Promise<Validation> {
  const python = await workingPython();
  const note = python ? "" : NO_PYTHON;
  if (path.endsWith(".jsonl")) {
    const p = readAndParse(path, path, (text, up) => {
      const r = parseJsonl(text, path, up);
      return { diagnostics: r.diagnostics, value: r.traces };
    });
    return lone(path, p.diagnostics, note);
  }
  // A solution has `spec` and `sources`; anything else is checked as a definition.
  const text = readFileSync(path, "latin1");
  const isSolution = /"spec"\s*:/.test(text) && /"sources"\s*:/.test(text);
  if (isSolution) {
    const p = readAndParse(path, path, (t, up) => {
      const r = parseSolution(t, path, up);
      return r.ok ? { diagnostics: [], value: r.value } : r;
    }, () => (raw) => DRAFT_UPGRADERS.solution(raw));
    if (!p.value) return lone(path, p.diagnostics, note);
    const more = await checkSolutions([{ sol: p.value, file: path }], python);
    const unchecked = ` (definition "${p.value.definition}" not found: no TraceSet above ` +
      `${basename(path)}, so its entry point was not checked against it)`;
    return lone(path, [...p.diagnostics, ...more], unchecked + note);
  }
  const p = readAndParse(path, path, (t, up) => {
    const r = parseDefinition(t, path, up);
    return r.ok ? { diagnostics: [], value: r.value } : r;
  }, () => DRAFT_UPGRADERS.definition);
  if (p.value && python) {
    p.diagnostics.push(
      ...await checkDefinitionsPython([{ def: p.value, file: path }], python) ?? [],
    );
  }
  return lone(path, p.diagnostics, note);
}

function lone(path: string, diagnostics: Diagnostic[], note: string): Validation {
  const bad = diagnostics.some((d) => d.level === "error");
  return { diagnostics, summary: `${path}: ${bad ? "invalid" : "valid"}${note}` };
}
