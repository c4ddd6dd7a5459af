/**
 * Evaluates a definition's constraint expressions (Python syntax) against a workload: its axes
 * (const from the definition, var from the workload) and its input tensors (shape from the
 * definition, data from safetensors blobs). The supported subset covers every constraint in the
 * FlashInfer-Trace dataset: integer literals, names, + - * // % (and /), comparisons (chained),
 * `and`/`or`/`not`, parentheses, `t.shape[i]`, `t[i]` (negative indices too) and `.item()`.
 * Anything else is reported as unsupported, never guessed.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import {
  decodeSafetensors,
  type RawTensor,
  tensorToNumbers,
  TRACE_TO_SAFETENSORS,
} from "./safetensors.ts";
import type { Definition, Workload } from "./schema.ts";

/** A tensor as the evaluator sees it: its shape, and its values when they are known. */
export interface TensorValue {
  shape: number[];
  data?: number[];
}
type Value = number | boolean | TensorValue | { shapeOf: TensorValue } | {
  method: "item";
  of: Value;
};

/** Outcome of one constraint. */
export type ConstraintResult =
  | { expr: string; status: "pass" }
  | { expr: string; status: "fail"; detail: string }
  | { expr: string; status: "unsupported"; detail: string };

class Unsupported extends Error {}

type Tok = { k: "num" | "name" | "op"; v: string };

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  const re = /\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(\/\/|==|!=|<=|>=|[-+*/%<>()[\].,]))/y;
  let i = 0;
  while (i < src.length) {
    if (/^\s*$/.test(src.slice(i))) break;
    re.lastIndex = i;
    const m = re.exec(src);
    if (!m) throw new Unsupported(`unsupported syntax at "${src.slice(i).trim()}"`);
    if (m[1] !== undefined) out.push({ k: "num", v: m[1] });
    else if (m[2] !== undefined) out.push({ k: "name", v: m[2] });
    else out.push({ k: "op", v: m[3] });
    i = re.lastIndex;
  }
  return out;
}

/** Evaluates one expression in an environment of names → values. */
export function evaluate(
  expr: string,
  env: Record<string, number | TensorValue>,
): number | boolean {
  const toks = tokenize(expr);
  let p = 0;
  const peek = () => toks[p];
  const eat = (v?: string) => {
    const t = toks[p];
    if (!t || (v !== undefined && t.v !== v)) {
      throw new Unsupported(`expected "${v ?? "token"}" in "${expr}"`);
    }
    p++;
    return t;
  };
  const num = (v: Value): number => {
    if (typeof v === "number") return v;
    if (typeof v === "boolean") return v ? 1 : 0;
    throw new Unsupported(`a tensor is used as a number in "${expr}"`);
  };
  const orExpr = (): Value => {
    let l = andExpr();
    while (peek()?.v === "or") {
      eat();
      const r = andExpr();
      l = Boolean(l) || Boolean(r);
    }
    return l;
  };
  const andExpr = (): Value => {
    let l = notExpr();
    while (peek()?.v === "and") {
      eat();
      const r = notExpr();
      l = Boolean(l) && Boolean(r);
    }
    return l;
  };
  const notExpr = (): Value => {
    if (peek()?.v === "not") {
      eat();
      return !notExpr();
    }
    return comparison();
  };
  const CMP = ["==", "!=", "<=", ">=", "<", ">"];
  const comparison = (): Value => {
    let l = arith();
    let result: boolean | null = null;
    while (peek() && CMP.includes(peek().v)) {
      const op = eat().v;
      const r = arith();
      const a = num(l), b = num(r);
      const ok = op === "=="
        ? a === b
        : op === "!="
        ? a !== b
        : op === "<="
        ? a <= b
        : op === ">="
        ? a >= b
        : op === "<"
        ? a < b
        : a > b;
      result = (result ?? true) && ok;
      l = r;
    }
    return result ?? l;
  };
  const arith = (): Value => {
    let l = term();
    while (peek()?.v === "+" || peek()?.v === "-") {
      const op = eat().v;
      const r = term();
      l = op === "+" ? num(l) + num(r) : num(l) - num(r);
    }
    return l;
  };
  const term = (): Value => {
    let l = unary();
    while (["*", "/", "//", "%"].includes(peek()?.v ?? "")) {
      const op = eat().v;
      const r = num(unary());
      const a = num(l);
      if ((op === "//" || op === "%" || op === "/") && r === 0) {
        throw new Unsupported(`division by zero in "${expr}"`);
      }
      l = op === "*"
        ? a * r
        : op === "/"
        ? a / r
        : op === "//"
        ? Math.floor(a / r)
        : ((a % r) + r) % r;
    }
    return l;
  };
  const unary = (): Value => {
    if (peek()?.v === "-") {
      eat();
      return -num(unary());
    }
    return postfix();
  };
  const postfix = (): Value => {
    let v = atom();
    for (;;) {
      const t = peek();
      if (t?.v === ".") {
        eat();
        const name = eat().v;
        if (name === "shape" && isTensor(v)) v = { shapeOf: v };
        else if (name === "item" && peek()?.v === "(") {
          eat("(");
          eat(")");
          v = num(v);
        } else throw new Unsupported(`unsupported attribute ".${name}" in "${expr}"`);
      } else if (t?.v === "[") {
        eat();
        const idx = num(orExpr());
        eat("]");
        v = index(v, idx);
      } else if (t?.v === "(") {
        throw new Unsupported(`unsupported call in "${expr}"`);
      } else return v;
    }
  };
  const isTensor = (v: Value): v is TensorValue => typeof v === "object" && "shape" in v;
  const index = (v: Value, i: number): Value => {
    if (typeof v === "object" && "shapeOf" in v) {
      const s = v.shapeOf.shape;
      const j = i < 0 ? s.length + i : i;
      if (j < 0 || j >= s.length) {
        throw new Unsupported(`shape index ${i} out of range in "${expr}"`);
      }
      return s[j];
    }
    if (isTensor(v)) {
      if (v.shape.length !== 1) {
        throw new Unsupported(`indexing a ${v.shape.length}-d tensor in "${expr}"`);
      }
      if (!v.data) {
        throw new Unsupported(`"${expr}" needs tensor values, but the input is random (no blob)`);
      }
      const j = i < 0 ? v.data.length + i : i;
      if (j < 0 || j >= v.data.length) {
        throw new Unsupported(`index ${i} out of range (length ${v.data.length})`);
      }
      return v.data[j];
    }
    throw new Unsupported(`indexing a number in "${expr}"`);
  };
  const atom = (): Value => {
    const t = eat();
    if (t.k === "num") return Number(t.v);
    if (t.k === "name") {
      if (t.v === "True") return true;
      if (t.v === "False") return false;
      if (!(t.v in env)) throw new Unsupported(`unknown name "${t.v}"`);
      return env[t.v];
    }
    if (t.v === "(") {
      const v = orExpr();
      eat(")");
      return v;
    }
    throw new Unsupported(`unexpected "${t.v}" in "${expr}"`);
  };
  const v = orExpr();
  if (p !== toks.length) {
    throw new Unsupported(`unsupported syntax at "${toks.slice(p).map((t) => t.v).join(" ")}"`);
  }
  if (typeof v === "object") throw new Unsupported(`"${expr}" does not evaluate to a value`);
  return v;
}

/** Evaluates every constraint of a definition. */
export function checkConstraints(
  def: Definition,
  env: Record<string, number | TensorValue>,
): ConstraintResult[] {
  return def.constraints.map((expr) => {
    try {
      const v = evaluate(expr, env);
      return v === true || v === 1
        ? { expr, status: "pass" }
        : { expr, status: "fail", detail: `evaluates to ${v}` };
    } catch (e) {
      if (e instanceof Unsupported) return { expr, status: "unsupported", detail: e.message };
      throw e;
    }
  });
}

/** Problems found in one workload (constraint failures, shape/dtype/range errors), plus unsupported. */
export interface WorkloadCheck {
  problems: string[];
  /**
   * The problems flashinfer-bench tolerates when it runs the workload (an input missing from the
   * workload is drawn at random, an extra axis is ignored, a causal-incompatible layout still
   * runs): a subset of `problems`.
   */
  tolerated: string[];
  unsupported: string[];
  constraints: ConstraintResult[];
}

const CAUSAL_ONLY = "causal prefill needs";

/**
 * Splits a check's problems into the causal-layout ones (some official prefill captures hold more
 * queries than keys; their blobs are otherwise valid and kernels still run) and the rest, which
 * make the workload impossible to materialise or run.
 */
export function splitProblems(chk: WorkloadCheck): { causal: string[]; blocking: string[] } {
  return {
    causal: chk.problems.filter((p) => p.includes(CAUSAL_ONLY)),
    blocking: chk.problems.filter((p) => !p.includes(CAUSAL_ONLY)),
  };
}

/** The problems that keep a workload from being run at all (see `WorkloadCheck.tolerated`). */
export const runBlockers = (chk: WorkloadCheck): string[] =>
  chk.problems.filter((p) => !chk.tolerated.includes(p));

/**
 * Checks a workload against its definition: var axes exactly, every input present, blobs exist
 * with the right key, shape and dtype; the constraints; and the index-tensor invariants the
 * kernels rely on (indptr starts at 0 and never decreases, indices within [0, num_pages),
 * last-page lengths within [1, page_size], causal prefill never has more queries than keys).
 */
export function checkWorkload(def: Definition, w: Workload, root: string): WorkloadCheck {
  const problems: string[] = [];
  const tolerated: string[] = [];
  const tolerate = (problem: string) => {
    problems.push(problem);
    tolerated.push(problem);
  };
  const env: Record<string, number | TensorValue> = {};
  const axes: Record<string, number> = {};
  for (const [name, ax] of Object.entries(def.axes)) {
    if (ax.type === "const") axes[name] = ax.value;
    else if (w.axes[name] === undefined) problems.push(`missing var axis "${name}"`);
    else axes[name] = w.axes[name];
  }
  for (const k of Object.keys(w.axes)) {
    if (!(k in def.axes) || def.axes[k].type === "const") {
      tolerate(`axis "${k}" is not a var axis of the definition`);
    }
  }
  Object.assign(env, axes);
  const blobs = new Map<string, Record<string, RawTensor>>();
  for (const [name, spec] of Object.entries(def.inputs)) {
    const inp = w.inputs[name];
    if (!inp) {
      tolerate(`input "${name}" missing`);
      continue;
    }
    if (spec.shape === null) {
      if (inp.type === "scalar") env[name] = Number(inp.value);
      else if (inp.type === "safetensors") {
        problems.push(`input "${name}" is a scalar but given as a blob`);
      }
      continue;
    }
    const shape = spec.shape.map((a) => axes[a] ?? NaN);
    const tv: TensorValue = { shape };
    if (inp.type === "scalar") problems.push(`input "${name}" is a tensor but given as a scalar`);
    if (inp.type === "safetensors") {
      const file = join(root, inp.path);
      if (!existsSync(file)) {
        problems.push(`blob ${inp.path} does not exist`);
      } else {
        let ts = blobs.get(file);
        if (!ts) {
          ts = decodeSafetensors(readFileSync(file)).tensors;
          blobs.set(file, ts);
        }
        const t = ts[inp.tensor_key];
        if (!t) problems.push(`blob ${inp.path} has no tensor "${inp.tensor_key}"`);
        else {
          if (t.shape.join(",") !== shape.join(",")) {
            problems.push(`input "${name}": blob shape [${t.shape}] != expected [${shape}]`);
          }
          if (TRACE_TO_SAFETENSORS[spec.dtype] !== t.dtype) {
            problems.push(`input "${name}": blob dtype ${t.dtype} != ${spec.dtype}`);
          }
          if (t.dtype.startsWith("I") || t.dtype === "U8" || t.dtype.startsWith("F")) {
            tv.data = tensorToNumbers(t);
          }
        }
      }
    }
    env[name] = tv;
  }
  const constraints = checkConstraints(def, env);
  for (const c of constraints) {
    if (c.status === "fail") problems.push(`constraint "${c.expr}" ${c.detail}`);
  }
  const unsupported = constraints.filter((c) => c.status === "unsupported").map((c) =>
    `${c.expr}: ${(c as { detail: string }).detail}`
  );
  // Index invariants.
  const data = (n: string) => (env[n] as TensorValue | undefined)?.data;
  for (const n of ["kv_indptr", "qo_indptr", "cu_seqlens"]) {
    const d = data(n);
    if (!d) continue;
    if (d[0] !== 0) problems.push(`${n}[0] = ${d[0]}, expected 0`);
    for (let i = 1; i < d.length; i++) {
      if (d[i] < d[i - 1]) {
        problems.push(`${n} decreases at ${i}`);
        break;
      }
    }
  }
  const idx = data("kv_indices");
  if (idx && axes.num_pages !== undefined) {
    const bad = idx.findIndex((v) => v < 0 || v >= axes.num_pages || !Number.isInteger(v));
    if (bad >= 0) problems.push(`kv_indices[${bad}] = ${idx[bad]} outside [0, ${axes.num_pages})`);
  }
  const last = data("kv_last_page_len");
  const ps = axes.page_size;
  if (last && ps !== undefined) {
    const bad = last.findIndex((v) => v < 1 || v > ps);
    if (bad >= 0) problems.push(`kv_last_page_len[${bad}] = ${last[bad]} outside [1, ${ps}]`);
  }
  const qo = data("qo_indptr"), kvp = data("kv_indptr");
  if (qo && kvp && def.name.includes("causal") && qo.length === kvp.length) {
    for (let i = 0; i + 1 < qo.length; i++) {
      const q = qo[i + 1] - qo[i];
      let kv = kvp[i + 1] - kvp[i];
      if ("kv_indices" in def.inputs && ps !== undefined) {
        // Paged: KV tokens = pages × page_size, less the unused tail of the last page.
        kv = kv * ps - (last ? ps - last[i] : 0);
      }
      if (q > kv) {
        tolerate(`request ${i}: ${q} queries but ${kv} keys (${CAUSAL_ONLY} qo <= kv)`);
        break;
      }
    }
  }
  return { problems, tolerated, unsupported, constraints };
}
