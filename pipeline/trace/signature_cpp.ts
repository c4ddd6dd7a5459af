/**
 * The C++/CUDA half of the entry-point check (signature.ts): comments stripped, functions and
 * their parameters found, and the entry symbol's registration read from PYBIND11_MODULE,
 * TORCH_LIBRARY or TVM_FFI_DLL_EXPORT_TYPED_FUNC, depending on the binding.
 */
import type { Definition, Solution } from "./schema.ts";
import type { Param, SignatureReport } from "./signature_text.ts";
import { fitCandidates, matchClose, splitTopLevel, topLevelEquals } from "./signature_text.ts";

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

/** Checks a C++/CUDA solution's entry symbol against the definition. */
export function checkCpp(
  sol: Solution,
  def: Definition,
  file: string,
  symbol: string,
): SignatureReport {
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
  const fit = fitCandidates(
    candidates.map((c) => ({ what: `${c.where}: ${symbol}`, params: c.params })),
    sol,
    def,
  );
  if (fit.errors.length === 0) return fit; // one binds: the other registrations' errors go
  r.errors.push(...fit.errors);
  return r;
}
