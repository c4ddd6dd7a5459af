/**
 * The exact Python checks flashinfer-bench applies to a definition: the reference parses as a
 * module with a top-level `def run`, and each constraint parses as an expression. Python's own
 * `ast` does the parsing, in one subprocess for a whole batch.
 */
import type { Definition } from "./schema.ts";

const CHECKER = `
import ast, json, sys
out = {}
for item in json.load(sys.stdin):
    try:
        tree = ast.parse(item["code"], mode=item["mode"])
        if item["mode"] == "exec" and not any(
            isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body
        ):
            out[item["id"]] = "Reference must define a top-level function named 'run'"
    except SyntaxError as e:
        out[item["id"]] = f"{e.msg} (line {e.lineno})"
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
  const items: Array<{ id: string; code: string; mode: "exec" | "eval" }> = [];
  for (const d of defs) {
    items.push({ id: `${d.name}\u0000$.reference`, code: d.reference, mode: "exec" });
    d.constraints.forEach((c, i) =>
      items.push({ id: `${d.name}\u0000$.constraints[${i}]`, code: c, mode: "eval" })
    );
  }
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
  const problems = JSON.parse(new TextDecoder().decode(out.stdout)) as Record<string, string>;
  return Object.entries(problems).map(([id, message]) => {
    const [definition, path] = id.split("\u0000");
    return { definition, path, message };
  }).sort((a, b) => (a.definition + a.path < b.definition + b.path ? -1 : 1));
}
