/**
 * Cheap, dependency-free checks of Python source that the schema can run synchronously.
 * The exact syntax check (Python's own `ast.parse`) runs in batch through `python_syntax.ts`
 * when a Python interpreter is available.
 */

/** Returns a reason string when `reference` has no top-level `def run`, else null. */
export function checkPythonShape(reference: string): string | null {
  // A top-level FunctionDef starts in column 0; `async def`, `run = lambda` and methods do not count.
  const topLevelRun = /^def[ \t]+run[ \t]*\(/m;
  if (!topLevelRun.test(stripStrings(reference))) {
    return "Reference must define a top-level function named 'run'";
  }
  return null;
}

/** Blanks out triple-quoted strings so a `def run(` inside a docstring is not mistaken for code. */
function stripStrings(src: string): string {
  return src.replace(/("""|''')[\s\S]*?\1/g, (m) => m.replace(/[^\n]/g, " "));
}
