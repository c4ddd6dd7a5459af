/**
 * Evaluates a definition's constraint expressions (Python syntax) against a workload: its axes
 * (const from the definition, var from the workload) and its input tensors (shape from the
 * definition, data from safetensors blobs). The supported subset covers every constraint in the
 * FlashInfer-Trace dataset: integer literals, names, + - * // % (and /), comparisons (chained),
 * `and`/`or`/`not`, parentheses, `t.shape[i]`, `t[i]` (negative indices too) and `.item()`.
 * Anything else is reported as unsupported, never guessed.
 */
import type { Definition } from "./schema.ts";

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
  return new ExpressionParser(expr, env).evaluate();
}

const isTensor = (v: Value): v is TensorValue => typeof v === "object" && "shape" in v;

// Maps, not object literals: a name token such as "constructor" must not look like an operator.
const COMPARISONS = new Map<string, (a: number, b: number) => boolean>([
  ["==", (a, b) => a === b],
  ["!=", (a, b) => a !== b],
  ["<=", (a, b) => a <= b],
  [">=", (a, b) => a >= b],
  ["<", (a, b) => a < b],
  [">", (a, b) => a > b],
]);

/** Python's operators on numbers; `//` and `%` round toward negative infinity as Python does. */
const PRODUCTS = new Map<string, (a: number, b: number) => number>([
  ["*", (a, b) => a * b],
  ["/", (a, b) => a / b],
  ["//", (a, b) => Math.floor(a / b)],
  ["%", (a, b) => ((a % b) + b) % b],
]);

/**
 * Recursive descent over one expression's tokens, one method per precedence level (lowest first:
 * or, and, not, comparison, + -, * / // %, unary minus, postfix, atom), evaluating as it parses.
 */
class ExpressionParser {
  private readonly toks: Tok[];
  private p = 0;

  constructor(
    private readonly expr: string,
    private readonly env: Record<string, number | TensorValue>,
  ) {
    this.toks = tokenize(expr);
  }

  /** The whole expression's value; trailing tokens or a tensor-valued result are unsupported. */
  evaluate(): number | boolean {
    const v = this.orExpr();
    if (this.p !== this.toks.length) {
      throw new Unsupported(
        `unsupported syntax at "${this.toks.slice(this.p).map((t) => t.v).join(" ")}"`,
      );
    }
    if (typeof v === "object") throw new Unsupported(`"${this.expr}" does not evaluate to a value`);
    return v;
  }

  private peek(): Tok | undefined {
    return this.toks[this.p];
  }

  /** The function of the next token when it is one of `ops`' operators (not consumed). */
  private operator<F>(ops: Map<string, F>): F | undefined {
    const t = this.peek();
    return t ? ops.get(t.v) : undefined;
  }

  /** Consumes the next token, which must be `v` when given. */
  private eat(v?: string): Tok {
    const t = this.toks[this.p];
    if (!t || (v !== undefined && t.v !== v)) {
      throw new Unsupported(`expected "${v ?? "token"}" in "${this.expr}"`);
    }
    this.p++;
    return t;
  }

  /** A value as a number (booleans as 0/1, as in Python). */
  private num(v: Value): number {
    if (typeof v === "number") return v;
    if (typeof v === "boolean") return v ? 1 : 0;
    throw new Unsupported(`a tensor is used as a number in "${this.expr}"`);
  }

  // Both operands are always evaluated (no short circuit), so an unsupported right-hand side is
  // reported even when the left one decides the result.
  private orExpr(): Value {
    let l = this.andExpr();
    while (this.peek()?.v === "or") {
      this.eat();
      const r = this.andExpr();
      l = Boolean(l) || Boolean(r);
    }
    return l;
  }

  private andExpr(): Value {
    let l = this.notExpr();
    while (this.peek()?.v === "and") {
      this.eat();
      const r = this.notExpr();
      l = Boolean(l) && Boolean(r);
    }
    return l;
  }

  private notExpr(): Value {
    if (this.peek()?.v === "not") {
      this.eat();
      return !this.notExpr();
    }
    return this.comparison();
  }

  /** Chained comparisons, as in Python: `a < b <= c` means `a < b and b <= c`. */
  private comparison(): Value {
    let l = this.arith();
    let result: boolean | null = null;
    for (let cmp = this.operator(COMPARISONS); cmp; cmp = this.operator(COMPARISONS)) {
      this.eat();
      const r = this.arith();
      const ok = cmp(this.num(l), this.num(r));
      result = (result ?? true) && ok;
      l = r;
    }
    return result ?? l;
  }

  private arith(): Value {
    let l = this.term();
    while (this.peek()?.v === "+" || this.peek()?.v === "-") {
      const op = this.eat().v;
      const r = this.term();
      l = op === "+" ? this.num(l) + this.num(r) : this.num(l) - this.num(r);
    }
    return l;
  }

  private term(): Value {
    let l = this.unary();
    for (let product = this.operator(PRODUCTS); product; product = this.operator(PRODUCTS)) {
      const op = this.eat().v;
      const r = this.num(this.unary());
      const a = this.num(l);
      if (op !== "*" && r === 0) throw new Unsupported(`division by zero in "${this.expr}"`);
      l = product(a, r);
    }
    return l;
  }

  private unary(): Value {
    if (this.peek()?.v === "-") {
      this.eat();
      return -this.num(this.unary());
    }
    return this.postfix();
  }

  /** An atom followed by any number of `.shape`, `.item()` and `[index]`. */
  private postfix(): Value {
    let v = this.atom();
    for (;;) {
      const t = this.peek();
      if (t?.v === ".") {
        this.eat();
        v = this.attribute(v, this.eat().v);
      } else if (t?.v === "[") {
        this.eat();
        const idx = this.num(this.orExpr());
        this.eat("]");
        v = this.index(v, idx);
      } else if (t?.v === "(") {
        throw new Unsupported(`unsupported call in "${this.expr}"`);
      } else return v;
    }
  }

  /** `v.shape` of a tensor, or `v.item()`; any other attribute is unsupported. */
  private attribute(v: Value, name: string): Value {
    if (name === "shape" && isTensor(v)) return { shapeOf: v };
    if (name === "item" && this.peek()?.v === "(") {
      this.eat("(");
      this.eat(")");
      return this.num(v);
    }
    throw new Unsupported(`unsupported attribute ".${name}" in "${this.expr}"`);
  }

  /** `v[i]` of a shape or a 1-d tensor with known values; negative indices count from the end. */
  private index(v: Value, i: number): Value {
    if (typeof v === "object" && "shapeOf" in v) {
      const s = v.shapeOf.shape;
      const j = i < 0 ? s.length + i : i;
      if (j < 0 || j >= s.length) {
        throw new Unsupported(`shape index ${i} out of range in "${this.expr}"`);
      }
      return s[j];
    }
    if (!isTensor(v)) throw new Unsupported(`indexing a number in "${this.expr}"`);
    if (v.shape.length !== 1) {
      throw new Unsupported(`indexing a ${v.shape.length}-d tensor in "${this.expr}"`);
    }
    if (!v.data) {
      throw new Unsupported(
        `"${this.expr}" needs tensor values, but the input is random (no blob)`,
      );
    }
    const j = i < 0 ? v.data.length + i : i;
    if (j < 0 || j >= v.data.length) {
      throw new Unsupported(`index ${i} out of range (length ${v.data.length})`);
    }
    return v.data[j];
  }

  /** A literal, a name, or a parenthesised expression. */
  private atom(): Value {
    const t = this.eat();
    if (t.k === "num") return Number(t.v);
    if (t.k === "name") {
      if (t.v === "True") return true;
      if (t.v === "False") return false;
      if (!(t.v in this.env)) throw new Unsupported(`unknown name "${t.v}"`);
      return this.env[t.v];
    }
    if (t.v === "(") {
      const v = this.orExpr();
      this.eat(")");
      return v;
    }
    throw new Unsupported(`unexpected "${t.v}" in "${this.expr}"`);
  }
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
