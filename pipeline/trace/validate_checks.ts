/**
 * The checks `validate` runs beyond the schema, shared by its file and folder modes: solutions
 * against their definitions (entry point and signature, as `generate` checks them before import)
 * with Python's own parse of their sources, definitions' Python, and the draft-format probe.
 */
import { existsSync } from "node:fs";
import { join, relative } from "node:path";
import type { Diagnostic } from "../engine/mod.ts";
import { findPython } from "../lib/mod.ts";
import { looksDraft, looksDraftTrace } from "./legacy.ts";
import { checkDefinitionsSyntax, checkSolutionsSyntax } from "./python_syntax.ts";
import type { Definition, Solution } from "./schema.ts";
import { checkSolutionSignature } from "./signature.ts";
import { readUtf8File } from "./text.ts";
import { listFiles } from "./traceset.ts";
import { blobPathEscapes } from "./confine.ts";

/** The Python interpreter if one runs here (TRACEPIPE_PYTHON may name one that does not). */
export async function workingPython(): Promise<string | null> {
  const python = await findPython();
  return python && (await checkDefinitionsSyntax([], python)) !== null ? python : null;
}

/** A solution to check, the file it came from, and its definition when one is known. */
export interface SolutionToCheck {
  sol: Solution;
  file: string;
  def?: Definition;
}

/**
 * Python's parse of every Python source (a syntax error is reported with its line, where the
 * static scan would only say the entry symbol is missing), then each solution's entry point and
 * signature against its definition. `python` null: the static scan alone.
 */
export async function checkSolutions(
  items: SolutionToCheck[],
  python: string | null,
): Promise<Diagnostic[]> {
  const out: Diagnostic[] = [];
  const syntax = python ? await checkSolutionsSyntax(items.map((i) => i.sol), python) : null;
  const broken = new Set<string>();
  for (const item of items) {
    for (const p of syntax?.filter((s) => s.solution === item.sol.name) ?? []) {
      out.push({
        level: "error",
        file: item.file,
        path: `$.sources[${p.index}].content`,
        message: `${p.file} does not parse: ${p.message}`,
      });
      broken.add(`${item.sol.name}\u0000${p.file}`);
    }
    if (!item.def) continue;
    // The entry file's syntax error is the whole story; the static scan would misread it.
    const entryFile = item.sol.spec.entry_point.split("::")[0];
    if (broken.has(`${item.sol.name}\u0000${entryFile}`)) continue;
    const report = checkSolutionSignature(item.sol, item.def);
    for (const e of report.errors) {
      out.push({ level: "error", file: item.file, path: "$.spec.entry_point", message: e });
    }
    for (const w of report.warnings) {
      out.push({ level: "warning", file: item.file, path: "$.spec.entry_point", message: w });
    }
  }
  return out;
}

/** Python's parse of the definitions' references and constraints, as diagnostics. */
export async function checkDefinitionsPython(
  defs: Array<{ def: Definition; file: string }>,
  python: string,
): Promise<Diagnostic[] | null> {
  const problems = await checkDefinitionsSyntax(defs.map((d) => d.def), python);
  if (problems === null) return null;
  const fileOf = new Map(defs.map((d) => [d.def.name, d.file]));
  return problems.map((p) => ({
    level: "error" as const,
    file: fileOf.get(p.definition)!,
    path: p.path,
    message: p.message,
  }));
}

/**
 * The first file of the TraceSet at `root` that is in the 2025 draft format (root-relative), or
 * null: each definition and solution, and the first line of each JSONL file, as `generate`
 * decides a corpus is a draft. Files that do not read or parse are left to the loader to report.
 */
export function findDraftFile(root: string): string | null {
  for (const [section, suffix] of [["definitions", ".json"], ["solutions", ".json"]] as const) {
    for (const f of sectionFiles(root, section, suffix)) {
      if (looksDraft(readJson(f))) return relative(root, f);
    }
  }
  for (const section of ["workloads", "traces"]) {
    for (const f of sectionFiles(root, section, ".jsonl")) {
      const first = readText(f)?.split("\n").find((l) => l.trim());
      if (first !== undefined && looksDraftTrace(parseJson(first))) return relative(root, f);
    }
  }
  return null;
}

/** True when a lone JSON or JSONL file's text is in the draft format. */
export function textLooksDraft(text: string, jsonl: boolean): boolean {
  if (!jsonl) return looksDraft(parseJson(text));
  return text.split("\n").some((l) => l.trim() !== "" && looksDraftTrace(parseJson(l)));
}

/** The one line that says a folder or file was read as the draft and upgraded in memory. */
export function draftNote(file: string, example: string | null): Diagnostic {
  return {
    level: "warning",
    file,
    path: "$",
    message:
      `the 2025 draft of the FlashInfer Trace format${
        example ? ` (${example} is one)` : ""
      }: validated as upgraded in memory, the files untouched; what follows is what the upgrade ` +
      "leaves wrong. generate imports such a corpus with the same upgrade " +
      "(tp reproduce --corpus DIR; pipeline/trace/legacy.ts)",
  };
}

function sectionFiles(root: string, section: string, suffix: string): string[] {
  const dir = join(root, section);
  return existsSync(dir) && !blobPathEscapes(root, section) ? listFiles(dir, suffix) : [];
}

function readText(f: string): string | null {
  try {
    return readUtf8File(f);
  } catch {
    return null;
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function readJson(f: string): unknown {
  const text = readText(f);
  return text === null ? undefined : parseJson(text);
}
