/**
 * Validating a night's upstream inputs before anything is judged. A TraceSet goes through
 * `validate` (the project's checker: layout, JSON, schemas, blobs, workloads against their
 * definitions, Python syntax); a serving-trace file through the parser `collect` replays it with.
 * What stops the night is what makes an upstream unreadable or wrong as data. What `generate`
 * resolves or judges by design does not: a reference to a definition the run itself provides, a
 * foreign trace naming a solution the set does not hold (such traces are counted, never imported),
 * and a solution's own entry point, signature or source syntax (judged as its COMPILE_ERROR).
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import type { Diagnostic } from "../engine/mod.ts";
import { loadTrace, TraceError } from "../serving/mod.ts";
import { validatePath } from "../trace/mod.ts";

/** What validation found in one upstream: the problems that stop the night, and the rest. */
export interface UpstreamCheck {
  errors: Diagnostic[];
  /** Errors `generate` handles by design, and warnings: reported, not fatal. */
  tolerated: Diagnostic[];
  summary: string;
}

const DANGLING = /^(definition|solution) "([^"]+)" does not exist in this TraceSet/;

/**
 * Whether `d`, an error of `validate` on an upstream TraceSet, is one `generate` handles by design
 * (see the module doc). `runDefinitions`: the names of the definitions the run loads itself.
 */
export function isTolerated(d: Diagnostic, runDefinitions: ReadonlySet<string>): boolean {
  if (d.level !== "error") return true;
  const file = d.file.replace(/\\/g, "/");
  const inSolutions = file.startsWith("solutions/") || file.includes("/solutions/");
  if (inSolutions && (d.path === "$.spec.entry_point" || d.path.startsWith("$.sources["))) {
    return true;
  }
  const m = DANGLING.exec(d.message);
  if (!m) return false;
  if (m[1] === "definition") return runDefinitions.has(m[2]);
  return file.startsWith("traces/") || file.includes("/traces/");
}

/**
 * The names of the definitions a profile's `definitions` stage loads (`<root>/definitions/**.json`,
 * named after their file, as the TraceSet layout names them).
 */
export function runDefinitionNames(root: string, roots: string[]): Set<string> {
  const names = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (e.name.endsWith(".json")) names.add(e.name.slice(0, -".json".length));
    }
  };
  for (const r of roots) {
    const dir = join(isAbsolute(r) ? r : resolve(root, r), "definitions");
    if (existsSync(dir) && statSync(dir).isDirectory()) walk(dir);
  }
  return names;
}

/**
 * Validates one fetched TraceSet. Diagnostics name its files as `label/<file>` (label: the source
 * name and revision), with the line and JSON path where the checker gives them.
 */
export async function checkTraceSet(
  dir: string,
  label: string,
  runDefinitions: ReadonlySet<string>,
): Promise<UpstreamCheck> {
  const { diagnostics, summary } = await validatePath(dir);
  const errors: Diagnostic[] = [];
  const tolerated: Diagnostic[] = [];
  for (const d of diagnostics) {
    (isTolerated(d, runDefinitions) ? tolerated : errors).push(d);
  }
  const named = (d: Diagnostic): Diagnostic => ({
    ...d,
    file: d.file.startsWith(dir) ? `${label}${d.file.slice(dir.length)}` : `${label}/${d.file}`,
  });
  return {
    errors: errors.map(named),
    tolerated: tolerated.map(named),
    summary: summary.replace(dir, label),
  };
}

/** The formats `collect` replays (pipeline/serving's). */
type TraceFormat = Parameters<typeof loadTrace>[1];

/** Parses a serving-trace file as `collect` will (its first problem, with file and line). */
export function checkServingTrace(
  file: string,
  format: TraceFormat,
  label: string,
  limit?: number,
): UpstreamCheck {
  try {
    const n = loadTrace(file, format, { limit }, label).length;
    return { errors: [], tolerated: [], summary: `${label}: ${n} requests (${format})` };
  } catch (e) {
    if (!(e instanceof TraceError)) throw e;
    // TraceError's message already reads `file:line: column X: reason`.
    const m = /^(.*?):(\d+): (.*)$/s.exec(e.message);
    const d: Diagnostic = m
      ? { level: "error", file: m[1], line: Number(m[2]), path: "$", message: m[3] }
      : { level: "error", file: label, path: "$", message: e.message };
    return { errors: [d], tolerated: [], summary: "" };
  }
}
