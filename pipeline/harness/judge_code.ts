/**
 * The harness files a judging command executes, whose bytes enter its stage's cell keys: the C ABI
 * header folder, the judge's data files (the gate's PTX) and the judge modules the command reaches.
 * A module reaches another by importing it (`import th_x`, `from th_x import …`) or by naming its
 * file (`"th_worker.py"`: the worker, zygote and build processes are started by path). The command
 * modules themselves are imported by `__main__.py` only when a job of theirs comes (its `COMMANDS`,
 * which names each command's module here too), so an edit of `th_time.py` re-keys the time cells and
 * no compile or verify cell.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "../engine/mod.ts";

/** The judge folder and the header folder every command's key holds whole (repo-relative). */
const JUDGE = "pipeline/harness/judge";
const INCLUDE = "pipeline/harness/include";

/** A judging command of the harness. */
export type JudgeCommand = "compile" | "verify" | "time";

/**
 * The module of `command` as `__main__.py`'s COMMANDS names it (`"time": ("th_time", "cmd_time")`):
 * read from there, so the table the judge dispatches by is the one the keys follow.
 */
function commandModule(main: string, command: JudgeCommand): string {
  const m = main.match(new RegExp(`["']${command}["']\\s*:\\s*\\(\\s*["'](\\w+)["']`));
  if (!m) throw new Error(`${JUDGE}/__main__.py: COMMANDS names no module for "${command}"`);
  return `${m[1]}.py`;
}

/** The judge modules a module's source names: imported ones and ones started by file name. */
export function judgeEdges(source: string, modules: Set<string>): string[] {
  const found = new Set<string>();
  for (
    const m of source.matchAll(
      /^\s*(?:from\s+(\w+)\s+import|import\s+([\w\s,]+?)(?:\s+as\s+\w+)?\s*(?:#.*)?$)/gm,
    )
  ) {
    const names = m[1] ? [m[1]] : m[2].split(",").map((n) => n.trim().split(/\s+/)[0]);
    for (const n of names) if (modules.has(`${n}.py`)) found.add(`${n}.py`);
  }
  for (const m of source.matchAll(/["'](\w+\.py)["']/g)) if (modules.has(m[1])) found.add(m[1]);
  return [...found].sort();
}

/**
 * The repo-relative files whose bytes key a judging stage running `command`: the header folder, the
 * judge's non-Python files, and the Python modules reachable from `__main__.py` and the command's
 * module. `root` is the repository (tests pass a fixture).
 */
export function judgeCode(command: JudgeCommand, root: string = REPO_ROOT): string[] {
  const dir = join(root, JUDGE);
  // Files only: a __pycache__ folder (Python writes one where it may) is no code of ours.
  const names = readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.startsWith("."))
    .map((e) => e.name);
  const modules = new Set(names.filter((n) => n.endsWith(".py")));
  const reached = new Set<string>();
  const queue = [
    "__main__.py",
    commandModule(readFileSync(join(dir, "__main__.py"), "utf8"), command),
  ];
  while (queue.length) {
    const at = queue.shift()!;
    if (reached.has(at) || !modules.has(at)) continue;
    reached.add(at);
    queue.push(...judgeEdges(readFileSync(join(dir, at), "utf8"), modules));
  }
  const data = names.filter((n) => !n.endsWith(".py"));
  return [INCLUDE, ...[...reached, ...data].sort().map((n) => `${JUDGE}/${n}`)];
}
