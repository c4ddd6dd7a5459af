/**
 * The package graph as a checked rule, in the spirit of denoland/std's circular-dependency check:
 * which folder may import which. A stage's cell keys digest every module it imports, so an import
 * across stages ties one stage's cells to another's code; these rules keep that from happening.
 *
 * Packages: `pipeline/engine`, `pipeline/trace`, `pipeline/lib`, `pipeline/serving`,
 * `pipeline/harness`, each `stages/<name>`, and the files outside them (`pipeline/cli.ts`,
 * `stages/mod.ts`, tests, tools). `pipeline/scale` (shards, Slurm) is application code like the
 * CLI: it may import every face, and no library package or stage may import it; so is
 * `pipeline/refresh` (the nightly refresh), which may also import the registry, and so is
 * `pipeline/claims` (artifact evaluation: `tp claims`, `tp report`), which imports the aggregate
 * stage's face. Tests
 * (`*_test.ts`, `testdata/`) may import anything.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";

/** What each library package may import besides itself (stages: see `allowed`). */
const LIBRARY_DEPS: Record<string, string[]> = {
  "pipeline/lib": [],
  "pipeline/engine": ["pipeline/lib"],
  "pipeline/trace": ["pipeline/engine", "pipeline/lib"],
  "pipeline/serving": ["pipeline/engine", "pipeline/lib"],
  "pipeline/harness": ["pipeline/engine", "pipeline/trace", "pipeline/lib"],
};
const STAGE_DEPS = Object.keys(LIBRARY_DEPS);

/**
 * Entry points imported by file rather than through their folder's face: a face is loaded whole
 * at run time, and these load heavy packages (DuckDB's native binding, Vega) that the GPU stages
 * must never load.
 */
export const SUB_ENTRIES = ["pipeline/lib/duckdb.ts", "pipeline/lib/vega.ts"];

/** One import: the importing file, the imported file (repo-relative) and whether it is dynamic. */
export interface Edge {
  from: string;
  to: string;
  /** A dynamic `import()` whose specifier is computed, not a literal (`to` is then ""). */
  computed?: boolean;
}

/** The package a repo-relative path belongs to. */
export function packageOf(path: string): string {
  const m = /^(pipeline\/(?:engine|trace|lib|serving|harness|scale|refresh|claims)|stages\/[^/]+)\//
    .exec(
      path,
    );
  if (m && !/^stages\/[^/]+$/.test(path)) return m[1];
  return path;
}

const isTest = (path: string) => /_test\.ts$/.test(path) || /(^|\/)testdata\//.test(path);

/** Why `edge` breaks the rules, or null when it is allowed. */
export function violation(edge: Edge): string | null {
  if (isTest(edge.from)) return null;
  if (edge.computed) {
    return edge.from === "stages/mod.ts"
      ? null
      : `${edge.from} imports a computed specifier: only the registry (stages/mod.ts) loads modules by name`;
  }
  const from = packageOf(edge.from), to = packageOf(edge.to);
  if (from === to) return null;
  if (edge.to.startsWith("tests/") || isTest(edge.to)) {
    return `${edge.from} imports test code ${edge.to}`;
  }
  const crossesIntoPackage = to !== edge.to;
  if (crossesIntoPackage && !edge.to.endsWith("/mod.ts") && !SUB_ENTRIES.includes(edge.to)) {
    return `${edge.from} reaches into ${to} (${edge.to}) instead of importing its face ${to}/mod.ts`;
  }
  if (from.startsWith("stages/") && from !== "stages/mod.ts") {
    if (to.startsWith("stages/")) return `stage ${from} imports stage ${to} (${edge.to})`;
    if (!STAGE_DEPS.includes(to)) return `stage ${from} imports ${edge.to}`;
    return null;
  }
  if (from in LIBRARY_DEPS) {
    if (!LIBRARY_DEPS[from].includes(to)) return `${from} may not import ${edge.to}`;
    return null;
  }
  return null; // the CLI, the registry, tools: the application may import every face
}

const SPECIFIER =
  /(?:import|export)\s*(?:type\s+)?(?:[^'"`;]*?\sfrom\s*)?["'](\.{1,2}\/[^"']+)["']|import\(\s*(?:["'](\.{1,2}\/[^"']+)["']|([^)"'`]+)\))/g;

/** Every relative import of every TypeScript file under `dirs` of `root`. */
export function importEdges(root: string, dirs: string[]): Edge[] {
  const edges: Edge[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(join(root, dir))) {
      const rel = join(dir, name);
      if (name === "node_modules" || name.startsWith(".")) continue;
      if (statSync(join(root, rel)).isDirectory()) walk(rel);
      else if (name.endsWith(".ts")) {
        const src = readFileSync(join(root, rel), "utf8")
          .replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
        for (const m of src.matchAll(SPECIFIER)) {
          const spec = m[1] ?? m[2];
          if (spec) edges.push({ from: rel, to: normalize(join(dirname(rel), spec)) });
          else if (m[3]) edges.push({ from: rel, to: "", computed: true });
        }
      }
    }
  };
  for (const d of dirs) walk(d);
  return edges;
}

/** Package-level cycles (each as the list of packages around it). */
export function packageCycles(edges: Edge[]): string[][] {
  const graph = new Map<string, Set<string>>();
  for (const e of edges) {
    if (e.computed || isTest(e.from)) continue;
    const a = packageOf(e.from), b = packageOf(e.to);
    if (a === b) continue;
    if (!graph.has(a)) graph.set(a, new Set());
    graph.get(a)!.add(b);
  }
  const cycles: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const path: string[] = [];
  const visit = (n: string) => {
    state.set(n, "open");
    path.push(n);
    for (const m of graph.get(n) ?? []) {
      if (state.get(m) === "open") cycles.push([...path.slice(path.indexOf(m)), m]);
      else if (!state.has(m)) visit(m);
    }
    path.pop();
    state.set(n, "done");
  };
  for (const n of [...graph.keys()].sort()) if (!state.has(n)) visit(n);
  return cycles;
}

/** Repo-relative form of an absolute path (for messages). */
export const relativeTo = (root: string, p: string) => relative(root, p);
