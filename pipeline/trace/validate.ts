/**
 * `validate PATH`: checks one file (definition, solution, workloads/traces JSONL, safetensors)
 * or a whole TraceSet, the way flashinfer-bench's validator does (layout, definitions, workloads
 * against their definitions, blobs), and Python's own syntax check where Python is available.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import type { Diagnostic } from "../engine/mod.ts";
import { findPython } from "../lib/mod.ts";
import { decodeSafetensors, SafetensorsError } from "./safetensors.ts";
import { checkDefinitionsSyntax } from "./python_syntax.ts";
import { loadTraceSet, parseDefinition, parseJsonl, parseSolution } from "./traceset.ts";
import { checkWorkload } from "./workload_check.ts";

/** Validates a single file by its kind (from its extension and contents). */
export function validateFile(path: string): Diagnostic[] {
  const name = basename(path);
  if (name.endsWith(".safetensors")) {
    try {
      decodeSafetensors(readFileSync(path));
      return [];
    } catch (e) {
      const msg = e instanceof SafetensorsError
        ? e.message
        : `cannot read: ${(e as Error).message}`;
      return [{ level: "error", file: path, path: "$", message: msg }];
    }
  }
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    return [{
      level: "error",
      file: path,
      path: "$",
      message: `cannot read: ${(e as Error).message}`,
    }];
  }
  if (name.endsWith(".jsonl")) return parseJsonl(text, path).diagnostics;
  if (name.endsWith(".json")) {
    // A solution has `spec` and `sources`; anything else is checked as a definition.
    const looksLikeSolution = /"spec"\s*:/.test(text) && /"sources"\s*:/.test(text);
    const p = looksLikeSolution ? parseSolution(text, path) : parseDefinition(text, path);
    return p.ok ? [] : p.diagnostics;
  }
  return [{
    level: "error",
    file: path,
    path: "$",
    message: "unknown file kind (expected .json, .jsonl or .safetensors)",
  }];
}

/** Validates a file or a TraceSet directory. */
export async function validatePath(
  path: string,
): Promise<{ diagnostics: Diagnostic[]; summary: string }> {
  if (!existsSync(path)) {
    return {
      diagnostics: [{
        level: "error",
        file: path,
        path: "$",
        message: "no such file or directory",
      }],
      summary: "",
    };
  }
  if (statSync(path).isFile()) {
    const diagnostics = validateFile(path);
    if (
      !diagnostics.length && path.endsWith(".json") &&
      !/"spec"\s*:/.test(readFileSync(path, "utf8"))
    ) {
      const p = parseDefinition(readFileSync(path, "utf8"), path);
      const py = await findPython();
      if (p.ok && py) {
        for (const s of await checkDefinitionsSyntax([p.value], py) ?? []) {
          diagnostics.push({ level: "error", file: path, path: s.path, message: s.message });
        }
      }
    }
    return { diagnostics, summary: `${path}: ${diagnostics.length ? "invalid" : "valid"}` };
  }
  const { set, diagnostics } = loadTraceSet(path, { checkBlobs: false });
  const py = await findPython();
  const syntax = py ? await checkDefinitionsSyntax([...set.definitions.values()], py) : null;
  for (const s of syntax ?? []) {
    diagnostics.push({
      level: "error",
      file: set.files.get(`definition:${s.definition}`)!,
      path: s.path,
      message: s.message,
    });
  }
  let workloads = 0;
  for (const [defName, wls] of set.workloads) {
    const def = set.definitions.get(defName)!;
    const file = join("workloads", def.op_type, `${defName}.jsonl`);
    wls.forEach((w, i) => {
      workloads++;
      for (const p of checkWorkload(def, w, path).located) {
        diagnostics.push({ level: "error", file, line: i + 1, path: p.path, message: p.message });
      }
    });
  }
  const summary = `${path}: ${set.definitions.size} definitions, ${workloads} workloads, ` +
    `${set.solutions.size} solutions, ${set.traces.length} traces` +
    (syntax === null ? " (no Python: references checked for `def run` only)" : "");
  return { diagnostics, summary };
}
