/**
 * Static checks of a solution's entry point against its definition, done before anything is
 * built: the entry file and symbol exist, and the entry function takes the definition's inputs
 * (and outputs, in destination-passing style) in order.
 *
 * The count rule is flashinfer-bench's (`Builder._try_validate_signature`, reference §3): the
 * call passes `n_in` (+ `n_out` for DPS) positional arguments, so optional extra parameters are
 * fine while missing parameters, required extras and required keyword-only parameters are not.
 * Names are compared where the source names them; a name mismatch is only a warning because the
 * harness passes arguments positionally.
 *
 * Python is scanned with strings and comments masked; C++ with comments removed. This is a
 * static approximation: a symbol bound dynamically (e.g. `run = make()`) is accepted without a
 * signature check, as flashinfer-bench skips the check when `inspect.signature` fails.
 */
import type { Definition, Solution } from "./schema.ts";
import { checkCpp } from "./signature_cpp.ts";
import type { Param, SignatureReport } from "./signature_text.ts";
import { fitCandidates, matchClose, splitTopLevel, topLevelEquals } from "./signature_text.ts";

export {
  bindError,
  expectedArgs,
  type Param,
  type SignatureReport,
  splitTopLevel,
} from "./signature_text.ts";
export {
  findCppFunctions,
  findTorchRegistrations,
  findTvmFfiExports,
  parseCppParams,
  parseTorchSchema,
  stripCppComments,
} from "./signature_cpp.ts";

// ---------------------------------------------------------------------------------------------
// Python

/** Replaces string literal contents and comments with spaces, keeping offsets and newlines. */
export function maskPython(src: string): string {
  const out = src.split("");
  let i = 0;
  const blank = (from: number, to: number) => {
    for (let k = from; k < to; k++) if (out[k] !== "\n") out[k] = " ";
  };
  while (i < src.length) {
    const ch = src[i];
    if (ch === "#") {
      const end = src.indexOf("\n", i);
      const stop = end === -1 ? src.length : end;
      blank(i, stop);
      i = stop;
    } else if (ch === '"' || ch === "'") {
      const triple = src.startsWith(ch.repeat(3), i);
      const q = triple ? ch.repeat(3) : ch;
      let j = i + q.length;
      while (j < src.length) {
        if (src[j] === "\\") j += 2;
        else if (src.startsWith(q, j)) break;
        else if (!triple && src[j] === "\n") break;
        else j++;
      }
      blank(i + q.length, Math.min(j, src.length));
      i = Math.min(j + q.length, src.length);
    } else i++;
  }
  return out.join("");
}

/** Parses a Python parameter list (text between the parentheses of a `def`). */
export function parsePythonParams(text: string): Param[] {
  const params: Param[] = [];
  let kwonly = false;
  for (const raw of splitTopLevel(text)) {
    if (raw === "/") continue;
    if (raw === "*") {
      kwonly = true;
      continue;
    }
    if (raw.startsWith("**")) {
      params.push({ name: raw.slice(2).split(":")[0].trim(), hasDefault: true, kind: "kwargs" });
      continue;
    }
    if (raw.startsWith("*")) {
      params.push({ name: raw.slice(1).split(":")[0].trim(), hasDefault: true, kind: "varargs" });
      kwonly = true;
      continue;
    }
    const eq = topLevelEquals(raw);
    const head = eq === -1 ? raw : raw.slice(0, eq);
    const name = head.split(":")[0].trim();
    params.push({ name, hasDefault: eq !== -1, kind: kwonly ? "kwonly" : "positional" });
  }
  return params;
}

/** How a top-level Python symbol is bound, with its parameters when it is a `def`. */
export type PythonBinding =
  | { kind: "def"; params: Param[]; line: number }
  | { kind: "other"; how: string; line: number };

/** Finds the top-level binding of `symbol` in Python source (the last one wins, as in Python). */
export function findPythonSymbol(src: string, symbol: string): PythonBinding | null {
  const masked = maskPython(src);
  const esc = symbol.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  let found: PythonBinding | null = null;
  const lineOf = (idx: number) => masked.slice(0, idx).split("\n").length;
  const defRe = new RegExp(`^(?:async[ \\t]+)?def[ \\t]+${esc}[ \\t]*\\(`, "gm");
  for (const m of masked.matchAll(defRe)) {
    const open = m.index! + m[0].length - 1;
    const close = matchClose(masked, open);
    if (close === -1) continue;
    const cand = {
      kind: "def" as const,
      params: parsePythonParams(masked.slice(open + 1, close)),
      line: lineOf(m.index!),
    };
    if (!found || cand.line > found.line) found = cand;
  }
  const others: Array<[RegExp, string]> = [
    [new RegExp(`^${esc}[ \\t]*(?::[^=\\n]*)?=(?!=)`, "gm"), "assignment"],
    [new RegExp(`^class[ \\t]+${esc}\\b`, "gm"), "class"],
    [
      new RegExp(`^(?:from[ \\t]+\\S+[ \\t]+)?import[ \\t][^\\n]*\\b(?:as[ \\t]+)?${esc}\\b`, "gm"),
      "import",
    ],
  ];
  for (const [re, how] of others) {
    for (const m of masked.matchAll(re)) {
      const line = lineOf(m.index!);
      if (!found || line > found.line) found = { kind: "other", how, line };
    }
  }
  return found;
}

function checkPython(
  sol: Solution,
  def: Definition,
  file: string,
  symbol: string,
  src: string,
): SignatureReport {
  const r: SignatureReport = { errors: [], warnings: [] };
  if (!file.endsWith(".py")) {
    r.errors.push(`entry file "${file}" must be a .py file for language ${sol.spec.language}`);
    return r;
  }
  const b = findPythonSymbol(src, symbol);
  if (!b) {
    r.errors.push(
      `entry symbol "${symbol}" is not defined at the top level of ${file} (no def, class, assignment or import binds it)`,
    );
    return r;
  }
  if (b.kind !== "def") return r; // bound dynamically: checked at build time, as flashinfer-bench does
  return fitCandidates([{ what: `${file}:${b.line}: def ${symbol}`, params: b.params }], sol, def);
}

/**
 * Checks that a solution's entry point exists and that its signature fits the definition.
 * Never throws; every problem is a message in the report.
 */
export function checkSolutionSignature(sol: Solution, def: Definition): SignatureReport {
  const parts = sol.spec.entry_point.split("::");
  if (parts.length !== 2 || !parts[0] || !parts[1]) {
    return {
      errors: [`entry_point "${sol.spec.entry_point}" must have the form "<file>::<symbol>"`],
      warnings: [],
    };
  }
  const [file, symbol] = parts;
  const src = sol.sources.find((s) => s.path === file);
  if (!src) return { errors: [`entry file "${file}" is not among the sources`], warnings: [] };
  switch (sol.spec.language) {
    case "python":
    case "triton":
    case "tilelang":
      return checkPython(sol, def, file, symbol, src.content);
    case "cuda":
    case "cpp":
      return checkCpp(sol, def, file, symbol);
  }
}
