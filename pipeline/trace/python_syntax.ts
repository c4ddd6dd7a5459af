/**
 * The exact Python checks flashinfer-bench applies to a definition: the reference parses as a
 * module with a top-level `def run`, and each constraint parses as an expression. Python's own
 * `ast` does the parsing, in one subprocess for a whole batch. The Python sources of solutions
 * are parsed the same way, so a syntax error is reported as such, with its line.
 */
import type { Definition, Solution } from "./schema.ts";

const CHECKER = `
import ast, json, sys
out = {}
for item in json.loads(sys.stdin.buffer.read()):
    try:
        tree = ast.parse(item["code"], mode=item["mode"])
        if item.get("needs_run", True) and item["mode"] == "exec" and not any(
            isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body
        ):
            out[item["id"]] = "Reference must define a top-level function named 'run'"
    except SyntaxError as e:
        out[item["id"]] = f"{e.msg} (line {e.lineno})"
    except ValueError as e:  # null bytes (before 3.12), unencodable surrogates
        out[item["id"]] = f"cannot be parsed: {e}"
json.dump(out, sys.stdout)
`;

/** One syntax problem: which definition, which field, why. */
export interface SyntaxProblem {
  definition: string;
  path: string;
  message: string;
}

/**
 * Checks every reference and constraint. Returns null when no Python interpreter can run
 * (the caller reports that the exact check was skipped).
 */
export async function checkDefinitionsSyntax(
  defs: Definition[],
  python = "python3",
): Promise<SyntaxProblem[] | null> {
  const items: CheckItem[] = [];
  for (const d of defs) {
    items.push({ id: `${d.name}\u0000$.reference`, code: d.reference, mode: "exec" });
    d.constraints.forEach((c, i) =>
      items.push({ id: `${d.name}\u0000$.constraints[${i}]`, code: c, mode: "eval" })
    );
  }
  const problems = await runChecker(items, python);
  if (problems === null) return null;
  return Object.entries(problems).map(([id, message]) => {
    const [definition, path] = id.split("\u0000");
    return { definition, path, message };
  }).sort((a, b) => (a.definition + a.path < b.definition + b.path ? -1 : 1));
}

/** One syntax error in a solution's source: which solution, which source (index and path). */
export interface SourceSyntaxProblem {
  solution: string;
  index: number;
  file: string;
  message: string;
}

/** The languages whose sources are Python modules. */
const PYTHON_LANGUAGES = new Set(["python", "triton", "tilelang"]);

/**
 * Parses every `.py` source of the Python-language solutions (python, triton, tilelang). Returns
 * null when no Python interpreter can run (the caller then keeps its static check's message).
 */
export async function checkSolutionsSyntax(
  sols: Solution[],
  python = "python3",
): Promise<SourceSyntaxProblem[] | null> {
  const items: CheckItem[] = [];
  for (const s of sols) {
    if (!PYTHON_LANGUAGES.has(s.spec.language)) continue;
    s.sources.forEach((src, i) => {
      if (!src.path.endsWith(".py")) return;
      items.push({ id: `${s.name}\u0000${i}`, code: src.content, mode: "exec", needs_run: false });
    });
  }
  if (items.length === 0) return [];
  const problems = await runChecker(items, python);
  if (problems === null) return null;
  const bySolution = new Map(sols.map((s) => [s.name, s]));
  return Object.entries(problems).map(([id, message]) => {
    const [solution, index] = id.split("\u0000");
    const i = Number(index);
    return { solution, index: i, file: bySolution.get(solution)!.sources[i].path, message };
  }).sort((a, b) => a.solution < b.solution ? -1 : a.solution > b.solution ? 1 : a.index - b.index);
}

interface CheckItem {
  id: string;
  code: string;
  mode: "exec" | "eval";
  /** Whether the module must define a top-level `run` (a definition's reference must). */
  needs_run?: boolean;
}

/** Runs CHECKER on the items: problem messages by item id, or null when Python cannot run. */
async function runChecker(
  items: CheckItem[],
  python: string,
): Promise<Record<string, string> | null> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(python, {
      args: ["-c", CHECKER],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch {
    return null;
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify(items)));
  await writer.close();
  const out = await child.output();
  if (!out.success) return null;
  return JSON.parse(new TextDecoder().decode(out.stdout)) as Record<string, string>;
}
