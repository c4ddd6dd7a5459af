/**
 * `validate PATH`: checks one file (definition, solution, workloads/traces JSONL, safetensors)
 * or a whole TraceSet, the way flashinfer-bench's validator does (layout, definitions, workloads
 * against their definitions, blobs), and Python's own syntax check where Python is available.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import type { Diagnostic } from "../engine/diagnostics.ts";
import { decodeSafetensors, SafetensorsError, TRACE_TO_SAFETENSORS } from "./safetensors.ts";
import { checkDefinitionsSyntax } from "./python_syntax.ts";
import type { Definition, Workload } from "./schema.ts";
import { findPython } from "../engine/toolchain.ts";
import { loadTraceSet, parseDefinition, parseJsonl, parseSolution } from "./traceset.ts";

/** Concrete shape of a definition tensor for a workload, or null for a scalar. */
export function inferShape(
  def: Definition,
  tensor: string,
  axes: Record<string, number>,
): number[] | null {
  const spec = def.inputs[tensor] ?? def.outputs[tensor];
  if (!spec || spec.shape === null) return null;
  return spec.shape.map((a) => {
    const ax = def.axes[a];
    if (ax.type === "const") return ax.value;
    const v = axes[a];
    if (v === undefined) throw new Error(`var axis "${a}" has no value in the workload`);
    return v;
  });
}

/** Checks a workload against its definition (and its blobs when `root` is given). */
export function checkWorkload(
  def: Definition,
  w: Workload,
  file: string,
  line: number | undefined,
  root?: string,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  const err = (path: string, message: string) =>
    out.push({ level: "error", file, line, path, message });
  const varAxes = Object.entries(def.axes).filter(([, a]) => a.type === "var").map(([n]) => n);
  for (const a of varAxes) {
    if (!(a in w.axes)) err(`$.workload.axes`, `missing var axis "${a}"`);
    else if (w.axes[a] <= 0) err(`$.workload.axes.${a}`, `must be > 0 (got ${w.axes[a]})`);
  }
  for (const a of Object.keys(w.axes)) {
    if (!varAxes.includes(a)) {
      err(`$.workload.axes.${a}`, `"${a}" is not a var axis of ${def.name}`);
    }
  }
  for (const name of Object.keys(def.inputs)) {
    if (!(name in w.inputs)) err(`$.workload.inputs`, `missing input "${name}"`);
  }
  for (const [name, inp] of Object.entries(w.inputs)) {
    const spec = def.inputs[name];
    const path = `$.workload.inputs.${name}`;
    if (!spec) {
      err(path, `"${name}" is not an input of ${def.name}`);
      continue;
    }
    if (inp.type === "scalar" && spec.shape !== null) {
      err(path, `scalar value for tensor input "${name}"`);
    }
    if (inp.type === "safetensors") {
      if (spec.shape === null) err(path, `safetensors blob for scalar input "${name}"`);
      if (!root) continue;
      const blob = resolve(root, inp.path);
      if (!existsSync(blob)) {
        err(`${path}.path`, `blob file "${inp.path}" does not exist`);
        continue;
      }
      let tensors;
      try {
        tensors = decodeSafetensors(readFileSync(blob)).tensors;
      } catch (e) {
        err(`${path}.path`, `${inp.path}: ${(e as Error).message}`);
        continue;
      }
      const t = tensors[inp.tensor_key];
      if (!t) {
        err(`${path}.tensor_key`, `key "${inp.tensor_key}" not in ${inp.path}`);
        continue;
      }
      let expected: number[] | null = null;
      try {
        expected = inferShape(def, name, w.axes);
      } catch (e) {
        err(path, (e as Error).message);
      }
      if (expected && JSON.stringify(expected) !== JSON.stringify(t.shape)) {
        err(path, `blob shape [${t.shape}] but the definition and axes give [${expected}]`);
      }
      const dt = TRACE_TO_SAFETENSORS[spec.dtype];
      if (dt && dt !== t.dtype) {
        err(path, `blob dtype ${t.dtype} but the definition says ${spec.dtype}`);
      }
    }
  }
  return out;
}

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
      diagnostics.push(...checkWorkload(def, w, file, i + 1, path));
    });
  }
  const summary = `${path}: ${set.definitions.size} definitions, ${workloads} workloads, ` +
    `${set.solutions.size} solutions, ${set.traces.length} traces` +
    (syntax === null ? " (no Python: references checked for `def run` only)" : "");
  return { diagnostics, summary };
}
