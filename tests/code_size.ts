/**
 * How long the project's own files and functions are. The limits (600 lines a file, 150 a
 * function) keep every module one purpose a reader can hold; kernel sources under cuda/, triton/
 * and baselines/ (one self-contained folder each, copies on purpose) and generated PTX are exempt.
 *
 * Functions are found by shape, which `deno fmt` makes reliable: a TypeScript line that opens a
 * function, method or arrow body with `{` at the end, closed by the first later line holding only
 * `}` (with `)`, `;` or `,`) at the same indentation. Python functions come from its own parser.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** A function longer than the limit. */
export interface LongFunction {
  file: string;
  name: string;
  line: number;
  lines: number;
}

const OPENER =
  /^(\s*)(?:export\s+)?(?:default\s+)?(?:async\s+)?(?:function\*?\s+(\w+)|(?:const|let)\s+(\w+)\s*=.*=>\s*\{$|(?:(?:private|public|static|async|get|set)\s+)*(\w+)\s*(?:<[^>]*>)?\([^)]*\)?.*\{$|(\w+)\s*(?::|=)\s*(?:async\s+)?(?:\([^)]*\)|\w+)\s*=>\s*\{$|(\w+)\s*\(\s*$)/;
const CONTROL = new Set(["if", "for", "while", "switch", "catch", "with", "return", "else"]);

/** Functions of a TypeScript source, with their line spans. */
export function tsFunctions(src: string): Array<{ name: string; line: number; lines: number }> {
  const lines = src.split("\n");
  const out: Array<{ name: string; line: number; lines: number }> = [];
  lines.forEach((text, i) => {
    const m = OPENER.exec(text);
    if (!m) return;
    const name = m[2] ?? m[3] ?? m[4] ?? m[5] ?? m[6];
    if (!name || CONTROL.has(name)) return;
    const indent = m[1];
    const close = new RegExp(`^${indent}[})\\]]+[;,)]*\\s*(?:=>.*)?$`);
    for (let j = i + 1; j < lines.length; j++) {
      if (close.test(lines[j])) {
        out.push({ name, line: i + 1, lines: j - i + 1 });
        return;
      }
    }
  });
  return out;
}

/** Python functions (via python3's ast), or null when python3 cannot run. */
export function pyFunctions(
  root: string,
  files: string[],
): Array<{ file: string; name: string; line: number; lines: number }> | null {
  const script = [
    "import ast, json, sys",
    "out = []",
    "for f in sys.argv[1:]:",
    "    tree = ast.parse(open(f, encoding='utf-8').read())",
    "    for n in ast.walk(tree):",
    "        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):",
    "            out.append({'file': f, 'name': n.name, 'line': n.lineno,",
    "                        'lines': n.end_lineno - n.lineno + 1})",
    "print(json.dumps(out))",
  ].join("\n");
  try {
    const r = new Deno.Command("python3", { args: ["-c", script, ...files], cwd: root })
      .outputSync();
    if (!r.success) return null;
    return JSON.parse(new TextDecoder().decode(r.stdout));
  } catch {
    return null;
  }
}

/** Line count of a file. */
export const lineCount = (root: string, f: string) =>
  readFileSync(join(root, f), "utf8").replace(/\n$/, "").split("\n").length;
