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
import type { Definition, Solution } from "../../pipeline/trace/mod.ts";

/** Outcome of checking one solution: errors reject it, warnings are reported only. */
export interface SignatureReport {
  errors: string[];
  warnings: string[];
}

/** One parameter of an entry function as read from source. */
export interface Param {
  /** Undefined when the source does not name it (unnamed C++ parameter). */
  name?: string;
  hasDefault: boolean;
  kind: "positional" | "varargs" | "kwonly" | "kwargs";
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/** Splits `text` at top-level commas, tracking (), [], {} and (optionally) <>. */
export function splitTopLevel(text: string, angles = false): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of text) {
    if ("([{".includes(ch) || (angles && ch === "<")) depth++;
    else if (")]}".includes(ch) || (angles && ch === ">")) depth = Math.max(0, depth - 1);
    if (ch === "," && depth === 0) {
      out.push(cur);
      cur = "";
    } else cur += ch;
  }
  out.push(cur);
  return out.map((s) => s.trim()).filter((s) => s.length > 0);
}

/** Index of the bracket closing the one at `open`, or -1. */
function matchClose(text: string, open: number): number {
  const o = text[open];
  const c = o === "(" ? ")" : o === "{" ? "}" : o === "[" ? "]" : "";
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === o) depth++;
    else if (text[i] === c && --depth === 0) return i;
  }
  return -1;
}

/** Index of a top-level `=` that is an assignment/default (not `==`, `<=`, `>=`, `!=`). */
function topLevelEquals(s: string): number {
  let depth = 0;
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if ("([{<".includes(ch)) depth++;
    else if (")]}>".includes(ch)) depth = Math.max(0, depth - 1);
    else if (ch === "=" && depth === 0 && s[i + 1] !== "=" && !"=<>!".includes(s[i - 1] ?? "")) {
      return i;
    }
  }
  return -1;
}

/**
 * Applies flashinfer-bench's bind rule to a parameter list: `n` positional arguments must bind.
 * Returns error text, or null when they bind.
 */
export function bindError(params: Param[], n: number): string | null {
  const positional = params.filter((p) => p.kind === "positional");
  const required = positional.filter((p) => !p.hasDefault).length;
  const varargs = params.some((p) => p.kind === "varargs");
  const kwRequired = params.filter((p) => p.kind === "kwonly" && !p.hasDefault);
  if (n < required) {
    return `takes ${required} required positional parameter(s) but the definition passes ${n}`;
  }
  if (n > positional.length && !varargs) {
    return `takes at most ${positional.length} positional parameter(s) but the definition passes ${n}`;
  }
  if (kwRequired.length > 0) {
    return `has required keyword-only parameter(s) ${kwRequired.map((p) => p.name).join(", ")}`;
  }
  return null;
}

/** The argument names the harness passes, in order. */
export function expectedArgs(sol: Solution, def: Definition): string[] {
  const names = Object.keys(def.inputs);
  return sol.spec.destination_passing_style ? [...names, ...Object.keys(def.outputs)] : names;
}

function describeExpected(sol: Solution, def: Definition): string {
  const n = expectedArgs(sol, def).length;
  return `${n} argument(s) (${
    expectedArgs(sol, def).join(", ")
  }; destination_passing_style=${sol.spec.destination_passing_style})`;
}

/** Compares names position by position; returns warnings. */
function nameWarnings(params: Param[], expected: string[], what: string): string[] {
  const positional = params.filter((p) => p.kind === "positional");
  const out: string[] = [];
  for (let i = 0; i < Math.min(positional.length, expected.length); i++) {
    const got = positional[i].name;
    if (got !== undefined && got !== expected[i]) {
      out.push(
        `${what}: parameter ${i + 1} is named "${got}" but the definition's argument ${i + 1} is "${
          expected[i]
        }"`,
      );
    }
  }
  return out;
}

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
  const expected = expectedArgs(sol, def);
  const err = bindError(b.params, expected.length);
  if (err) {
    r.errors.push(
      `${file}:${b.line}: def ${symbol} ${err}; expected ${describeExpected(sol, def)}`,
    );
  } else r.warnings.push(...nameWarnings(b.params, expected, `${file}:${b.line}: def ${symbol}`));
  return r;
}

// ---------------------------------------------------------------------------------------------
// C++ / CUDA

/** Removes // and /* *\/ comments outside string and char literals, keeping newlines. */
export function stripCppComments(src: string): string {
  let out = "";
  let i = 0;
  while (i < src.length) {
    const ch = src[i];
    if (ch === "/" && src[i + 1] === "/") {
      while (i < src.length && src[i] !== "\n") i++;
    } else if (ch === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      const stop = end === -1 ? src.length : end + 2;
      out += src.slice(i, stop).replace(/[^\n]/g, " ");
      i = stop;
    } else if (ch === '"' || ch === "'") {
      let j = i + 1;
      while (j < src.length && src[j] !== ch && src[j] !== "\n") j += src[j] === "\\" ? 2 : 1;
      out += src.slice(i, j + 1);
      i = j + 1;
    } else {
      out += ch;
      i++;
    }
  }
  return out;
}

const CPP_TYPE_WORDS = new Set([
  "int",
  "float",
  "double",
  "bool",
  "char",
  "long",
  "short",
  "unsigned",
  "signed",
  "auto",
  "const",
  "volatile",
]);

/** Parses a C++ parameter list; `(void)` and `()` give none. */
export function parseCppParams(text: string): Param[] {
  const t = text.trim();
  if (t === "" || t === "void") return [];
  return splitTopLevel(t, true).map((raw) => {
    if (raw === "...") return { hasDefault: true, kind: "varargs" as const };
    const eq = topLevelEquals(raw);
    const decl = (eq === -1 ? raw : raw.slice(0, eq)).replace(/\[[^\]]*\]\s*$/, "").trim();
    // The name is the last identifier, unless the declaration is only a type: one token, a
    // qualified name (`torch::Tensor`), a template (`std::vector<int>`) or a builtin keyword.
    const m = decl.match(/(::\s*)?([A-Za-z_]\w*)\s*$/);
    const named = m !== null && !m[1] && decl.slice(0, m.index).trim().length > 0 &&
      !CPP_TYPE_WORDS.has(m[2]);
    return { name: named ? m![2] : undefined, hasDefault: eq !== -1, kind: "positional" as const };
  });
}

/** A C++ function definition found in the sources. */
interface CppFunction {
  file: string;
  line: number;
  params: Param[];
}

/** Finds definitions (with a body) of function `name` (unqualified) in the given sources. */
export function findCppFunctions(
  sources: Array<{ path: string; text: string }>,
  name: string,
): CppFunction[] {
  const out: CppFunction[] = [];
  const esc = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const re = new RegExp(`(?<![\\w.])${esc}\\s*\\(`, "g");
  for (const { path, text } of sources) {
    for (const m of text.matchAll(re)) {
      const open = m.index! + m[0].length - 1;
      const close = matchClose(text, open);
      if (close === -1) continue;
      // A definition: `)` then optional qualifiers / trailing return type, then `{`.
      const after = text.slice(close + 1, close + 200);
      if (!/^\s*(?:const\s*|noexcept(?:\([^)]*\))?\s*|override\s*|->\s*[^{;=]+)*\{/.test(after)) {
        continue;
      }
      // A call such as `return run(x) {`-like text cannot follow `return`, `=`, `(` or `,`.
      const before = text.slice(Math.max(0, m.index! - 40), m.index!).trimEnd();
      if (before === "" || /(?:\breturn|[=(,;{}])$/.test(before)) continue;
      out.push({
        file: path,
        line: text.slice(0, m.index!).split("\n").length,
        params: parseCppParams(text.slice(open + 1, close)),
      });
    }
  }
  return out;
}

/** A registration of the entry symbol in a binding block. */
interface Registration {
  file: string;
  line: number;
  /** Function referenced (unqualified), or null for a lambda / schema-only registration. */
  fn: string | null;
  /** Parameters given by the registration itself (py::arg list, lambda or TORCH_LIBRARY schema). */
  params: Param[] | null;
}

/** Parses the function argument of a registration: `&ns::fn`, `fn`, `py::overload_cast<..>(&fn)`, a lambda. */
function registeredFunction(expr: string): { fn: string | null; lambdaParams: Param[] | null } {
  const e = expr.trim();
  if (e.startsWith("[")) {
    const open = e.indexOf("(");
    const close = open === -1 ? -1 : matchClose(e, open);
    return { fn: null, lambdaParams: close === -1 ? [] : parseCppParams(e.slice(open + 1, close)) };
  }
  const m = e.match(/&?\s*((?:[A-Za-z_]\w*\s*::\s*)*[A-Za-z_]\w*)\s*\)?\s*$/) ??
    e.match(/\(\s*&?\s*((?:[A-Za-z_]\w*\s*::\s*)*[A-Za-z_]\w*)\s*\)/);
  if (!m) return { fn: null, lambdaParams: null };
  const parts = m[1].split("::").map((s) => s.trim());
  return { fn: parts[parts.length - 1], lambdaParams: null };
}

/** Parses the parameters of a TORCH_LIBRARY schema string such as `run(Tensor a, Tensor? b=None) -> Tensor`. */
export function parseTorchSchema(schema: string): { name: string; params: Param[] } | null {
  const m = schema.match(/^\s*([A-Za-z_][\w.]*)\s*\(/);
  if (!m) return null;
  const open = schema.indexOf("(");
  const close = matchClose(schema, open);
  if (close === -1) return null;
  let kwonly = false;
  const params: Param[] = [];
  for (const raw of splitTopLevel(schema.slice(open + 1, close))) {
    if (raw === "*") {
      kwonly = true;
      continue;
    }
    const eq = raw.indexOf("=");
    const decl = (eq === -1 ? raw : raw.slice(0, eq)).trim().split(/\s+/);
    params.push({
      name: decl[decl.length - 1],
      hasDefault: eq !== -1,
      kind: kwonly ? "kwonly" : "positional",
    });
  }
  return { name: m[1].split(".")[0], params };
}

/** Finds registrations of `symbol` in PYBIND11_MODULE and TORCH_LIBRARY blocks. */
export function findTorchRegistrations(
  sources: Array<{ path: string; text: string }>,
  symbol: string,
): Registration[] {
  const regs: Registration[] = [];
  for (const { path, text } of sources) {
    const blockRe =
      /\b(PYBIND11_MODULE|TORCH_LIBRARY(?:_FRAGMENT)?)\s*\(\s*[\w]+\s*,\s*(\w+)\s*\)\s*\{/g;
    for (const b of text.matchAll(blockRe)) {
      const open = b.index! + b[0].length - 1;
      const close = matchClose(text, open);
      const body = text.slice(open + 1, close === -1 ? text.length : close);
      const mod = b[2];
      const defRe = new RegExp(`\\b${mod}\\s*\\.\\s*def\\s*\\(`, "g");
      for (const d of body.matchAll(defRe)) {
        const argOpen = d.index! + d[0].length - 1;
        const argClose = matchClose(body, argOpen);
        if (argClose === -1) continue;
        const args = splitTopLevel(body.slice(argOpen + 1, argClose), true);
        const lit = args[0]?.match(/^"((?:[^"\\]|\\.)*)"$/);
        if (!lit) continue;
        const line = text.slice(0, open + 1 + d.index!).split("\n").length;
        if (b[1] === "PYBIND11_MODULE") {
          if (lit[1] !== symbol) continue;
          const { fn, lambdaParams } = registeredFunction(args[1] ?? "");
          const pyArgs = args.slice(2).filter((a) =>
            /^py::arg\s*\(/.test(a) || /^pybind11::arg\s*\(/.test(a)
          );
          let params: Param[] | null = lambdaParams;
          if (pyArgs.length > 0) {
            params = pyArgs.map((a) => ({
              name: a.match(/arg\s*\(\s*"([^"]*)"/)?.[1],
              hasDefault: topLevelEquals(a) !== -1,
              kind: "positional" as const,
            }));
          }
          regs.push({ file: path, line, fn, params });
        } else {
          const schema = parseTorchSchema(lit[1]);
          if (schema && schema.name === symbol) {
            regs.push({ file: path, line, fn: null, params: schema.params });
          } else if (!schema && lit[1] === symbol && args[1]) {
            regs.push({ file: path, line, fn: registeredFunction(args[1]).fn, params: null });
          }
        }
      }
    }
  }
  return regs;
}

/** Finds `TVM_FFI_DLL_EXPORT_TYPED_FUNC(symbol, fn)` exports. */
export function findTvmFfiExports(
  sources: Array<{ path: string; text: string }>,
  symbol: string,
): Registration[] {
  const regs: Registration[] = [];
  for (const { path, text } of sources) {
    for (const m of text.matchAll(/\bTVM_FFI_DLL_EXPORT_TYPED_FUNC\s*\(/g)) {
      const open = m.index! + m[0].length - 1;
      const close = matchClose(text, open);
      if (close === -1) continue;
      const args = splitTopLevel(text.slice(open + 1, close), true);
      if (args[0] !== symbol) continue;
      const { fn, lambdaParams } = registeredFunction(args[1] ?? "");
      regs.push({
        file: path,
        line: text.slice(0, m.index!).split("\n").length,
        fn,
        params: lambdaParams,
      });
    }
  }
  return regs;
}

const CPP_SOURCE = /\.(cu|cpp|cc|cxx|c)$/;
const CPP_ANY = /\.(cu|cuh|cpp|cc|cxx|c|h|hpp|hh|hxx|inl)$/;

function checkCpp(sol: Solution, def: Definition, file: string, symbol: string): SignatureReport {
  const r: SignatureReport = { errors: [], warnings: [] };
  if (!CPP_SOURCE.test(file)) {
    r.errors.push(
      `entry file "${file}" must be one of .cu .cpp .cc .cxx .c for language ${sol.spec.language}`,
    );
    return r;
  }
  const sources = sol.sources.filter((s) => CPP_ANY.test(s.path)).map((s) => ({
    path: s.path,
    text: stripCppComments(s.content),
  }));
  const torch = sol.spec.binding === "torch";
  const regs = torch ? findTorchRegistrations(sources, symbol) : findTvmFfiExports(sources, symbol);
  if (regs.length === 0) {
    r.errors.push(
      torch
        ? `entry symbol "${symbol}" is not registered: no m.def("${symbol}", ...) in a PYBIND11_MODULE or TORCH_LIBRARY block of any source`
        : `entry symbol "${symbol}" is not exported: no TVM_FFI_DLL_EXPORT_TYPED_FUNC(${symbol}, ...) in any source (binding ${
          sol.spec.binding ?? "null = tvm-ffi"
        })`,
    );
    return r;
  }
  const expected = expectedArgs(sol, def);
  // Every registration (pybind11 overloads) gives one candidate parameter list; one must bind.
  const candidates: Array<{ where: string; params: Param[] }> = [];
  for (const reg of regs) {
    const params = reg.params;
    let where = `${reg.file}:${reg.line}`;
    if (reg.fn !== null) {
      const fns = findCppFunctions(sources, reg.fn);
      if (fns.length === 0 && params === null) {
        r.errors.push(
          `${where}: "${symbol}" is bound to function "${reg.fn}", which is not defined in any source`,
        );
        continue;
      }
      if (fns.length > 0) {
        where = `${fns[0].file}:${fns[0].line} (${reg.fn})`;
        if (params === null) {
          for (const f of fns) {
            candidates.push({ where: `${f.file}:${f.line} (${reg.fn})`, params: f.params });
          }
          continue;
        }
        // py::arg list given: it names the parameters; the C++ function fixes their count.
        const f = fns.find((x) => x.params.length === params!.length) ?? fns[0];
        if (f.params.length !== params.length) {
          r.errors.push(
            `${where}: py::arg list has ${params.length} names but ${reg.fn} takes ${f.params.length} parameters`,
          );
          continue;
        }
      }
    }
    if (params !== null) candidates.push({ where, params });
  }
  if (candidates.length === 0) return r;
  const failures: string[] = [];
  for (const c of candidates) {
    const err = bindError(c.params, expected.length);
    if (err === null) {
      r.errors = [];
      r.warnings.push(...nameWarnings(c.params, expected, `${c.where}: ${symbol}`));
      return r;
    }
    failures.push(`${c.where}: ${symbol} ${err}`);
  }
  r.errors.push(`${failures.join("; ")}; expected ${describeExpected(sol, def)}`);
  return r;
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
