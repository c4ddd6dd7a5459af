/**
 * What the entry-point signature checks of every language share: the parameter model, the
 * bracket-aware text helpers and flashinfer-bench's bind rule (see signature.ts).
 */
import type { Definition, Solution } from "./schema.ts";

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
export function matchClose(text: string, open: number): number {
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
export function topLevelEquals(s: string): number {
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

export function describeExpected(sol: Solution, def: Definition): string {
  const n = expectedArgs(sol, def).length;
  return `${n} argument(s) (${
    expectedArgs(sol, def).join(", ")
  }; destination_passing_style=${sol.spec.destination_passing_style})`;
}

/** Compares names position by position; returns warnings. */
export function nameWarnings(params: Param[], expected: string[], what: string): string[] {
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

/**
 * Checks candidate parameter lists (one per registration or overload of the entry symbol; Python
 * has one) against the definition: the first that binds gives its name warnings; when none binds,
 * one error says why each fails and what the definition passes. `what` names a candidate.
 */
export function fitCandidates(
  candidates: Array<{ what: string; params: Param[] }>,
  sol: Solution,
  def: Definition,
): SignatureReport {
  const expected = expectedArgs(sol, def);
  const failures: string[] = [];
  for (const c of candidates) {
    const err = bindError(c.params, expected.length);
    if (err === null) return { errors: [], warnings: nameWarnings(c.params, expected, c.what) };
    failures.push(`${c.what} ${err}`);
  }
  return {
    errors: [`${failures.join("; ")}; expected ${describeExpected(sol, def)}`],
    warnings: [],
  };
}
