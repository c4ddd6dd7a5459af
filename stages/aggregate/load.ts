/**
 * Builds the aggregate database from upstream TraceSet fragments. Definitions, solutions and
 * workloads (small) go through the project's TS parsers; traces (up to millions of lines) are read
 * by DuckDB's read_ndjson straight from the JSONL files. A file DuckDB rejects, or whose rows fail
 * the checks the analysis relies on, is re-read by the TS parser, which names the file and line of
 * every bad line and keeps the good ones; the rest of the run goes on (load_traces.ts).
 */
import { existsSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { DuckDBConnection } from "@duckdb/node-api";
import type { Diagnostic } from "../../pipeline/engine/mod.ts";
import {
  type Definition,
  isWorkloadTrace,
  listFiles,
  parseDefinition,
  parseJsonl,
  parseSolution,
  type Solution,
} from "../../pipeline/trace/mod.ts";
import { all, appendRows, runSqlFile, sqlString } from "./db.ts";
import { displayName, type Fragment, readOrDiagnose } from "./fragment.ts";
import {
  countTraces,
  loadTraceFiles,
  loadTracesViaDuckdb,
  reloadTracesViaJs,
  type TraceFile,
} from "./load_traces.ts";
import { classifyCompileErrors, expandRejectedTraces, loadTimings } from "./load_derived.ts";
import type { AggregateParams } from "./params.ts";
import { workloadCost } from "./roofline.ts";

// The fragment type and file naming live in fragment.ts; this module stays their door.
export { displayName, type Fragment, REJECTED_DIR } from "./fragment.ts";

/** Counts and diagnostics of a load. */
export interface LoadResult {
  definitions: number;
  workloads: number;
  solutions: number;
  /** Trace lines read (a rejected solution's one trace counts once, before its expansion). */
  traces: number;
  /** Solutions generate rejected that count as COMPILE_ERROR runs (load_derived.ts). */
  rejectedSolutions: number;
  traceFiles: number;
  tracesViaDuckdb: number;
  tracesViaJs: number;
  diagnostics: Diagnostic[];
  timings: Record<string, number>;
}

const SQL_DIR = new URL("./sql/", import.meta.url).pathname;

/** The .sql files of the analysis views, in the order they must run. */
export function viewFiles(): string[] {
  return listFiles(SQL_DIR, ".sql").filter((f) => !f.endsWith("00_schema.sql"));
}

function panelOf(def: Definition, params: AggregateParams): string {
  for (const r of params.panels) {
    if (r.opType === def.op_type && new RegExp(r.match).test(def.name)) return r.panel;
  }
  return def.op_type;
}

/** p values 0, step, ..., max, rounded so that 0.1·3 is exactly the literal 0.3. */
export function pGrid(step: number, max: number): number[] {
  const n = Math.round(max / step);
  return Array.from({ length: n + 1 }, (_, i) => Number((i * step).toFixed(10)));
}

/** Creates the schema and loads every fragment into it; then creates the analysis views. */
export async function loadDatabase(
  conn: DuckDBConnection,
  fragments: Fragment[],
  params: AggregateParams,
  log: (msg: string) => void,
): Promise<LoadResult> {
  const timings: Record<string, number> = {};
  const lap = lapTimer(timings, log);
  // Row order of the raw tables carries no meaning (every view orders its output), and dropping
  // it lets DuckDB insert and copy in parallel.
  await conn.run("SET preserve_insertion_order = false");
  await runSqlFile(conn, join(SQL_DIR, "00_schema.sql"));

  const cat = await loadCatalogue(conn, fragments, params);
  lap(
    `definitions, solutions, workloads (${cat.defs.size}, ${cat.sols.size}, ${cat.wlRows.length})`,
  );
  await loadProvenance(conn, fragments);
  await loadSettings(conn, params);
  await loadPGrid(conn, cat, params);

  const files = await loadTraceFiles(conn, fragments);
  const jsFiles = await loadTracesViaDuckdb(conn, files, log);
  const viaDuck = files.length ? await countTraces(conn) : 0;
  lap(`traces via read_ndjson (${viaDuck} rows from ${files.length - jsFiles.size} files)`);
  let viaJs = 0;
  if (jsFiles.size > 0) {
    const js = await reloadTracesViaJs(conn, files, jsFiles, viaDuck, cat);
    viaJs = js.rows;
    lap(
      `traces via the TS parser (${viaJs} rows from ${jsFiles.size} files; ${js.deleted} DuckDB rows replaced)`,
    );
  }

  const read = await countTraces(conn);
  const rejected = await expandRejectedTraces(conn);
  await classifyCompileErrors(conn);
  const sideBaselines = await loadTimings(conn, fragments, cat.sols, cat.diags);
  lap(
    `rejected solutions (${rejected}), compile-error classes, baselines timed beside candidates (${sideBaselines})`,
  );
  await addOrphanWorkloadCosts(conn, files, jsFiles, cat);
  await appendRows(conn, "workload_cost", cat.costRows);
  await appendRows(
    conn,
    "diagnostics",
    cat.diags.map((d) => [d.level, d.file, d.line ?? null, d.path, d.message]),
  );
  await createViews(conn);
  lap("workload costs, diagnostics, views");
  return {
    definitions: cat.defs.size,
    workloads: cat.wlRows.length,
    solutions: cat.sols.size,
    traces: read,
    rejectedSolutions: rejected,
    traceFiles: files.length,
    tracesViaDuckdb: read - viaJs,
    tracesViaJs: viaJs,
    diagnostics: cat.diags,
    timings,
  };
}

/** Records the seconds since the previous lap (or since its creation) under each name, and logs them. */
function lapTimer(timings: Record<string, number>, log: (msg: string) => void) {
  let t0 = performance.now();
  return (name: string) => {
    const now = performance.now();
    timings[name] = (now - t0) / 1000;
    t0 = now;
    log(`  ${name}: ${timings[name].toFixed(2)} s`);
  };
}

/**
 * What the TS parsers read from the fragments (definitions, solutions, workloads), merged across
 * fragments with the first occurrence winning, plus the rows still to append at the end: workload
 * costs (the orphan workloads' come later) and every diagnostic of the load.
 */
interface Catalogue {
  defs: Map<string, Definition>;
  sols: Map<string, Solution>;
  defRows: unknown[][];
  solRows: unknown[][];
  wlRows: unknown[][];
  /** definition NUL uuid of every workload row, for the first-occurrence rule. */
  wlSeen: Set<string>;
  costRows: unknown[][];
  diags: Diagnostic[];
}

/** Reads the definitions, solutions and workloads of every fragment and appends their tables. */
async function loadCatalogue(
  conn: DuckDBConnection,
  fragments: Fragment[],
  params: AggregateParams,
): Promise<Catalogue> {
  const cat: Catalogue = {
    defs: new Map(),
    sols: new Map(),
    defRows: [],
    solRows: [],
    wlRows: [],
    wlSeen: new Set(),
    costRows: [],
    diags: [],
  };
  // Every fragment's definitions first: a solution or workload may refer to a definition that
  // another fragment brings. Solutions and workloads then go fragment by fragment, which keeps
  // the order of the diagnostics.
  for (const f of fragments) readDefinitions(f, params, cat);
  for (const f of fragments) {
    readSolutions(f, cat);
    readWorkloads(f, cat);
  }
  await appendRows(conn, "definitions", cat.defRows);
  await appendRows(conn, "solutions", cat.solRows);
  await appendRows(conn, "workloads", cat.wlRows);
  return cat;
}

/** One fragment's definitions/*.json. */
function readDefinitions(f: Fragment, params: AggregateParams, cat: Catalogue): void {
  for (const p of listFiles(join(f.dir, "definitions"), ".json")) {
    const text = readOrDiagnose(f, p, cat.diags);
    if (text === null) continue;
    const r = parseDefinition(text, displayName(f, p));
    if (!r.ok) {
      cat.diags.push(...r.diagnostics);
      continue;
    }
    if (cat.defs.has(r.value.name)) continue;
    cat.defs.set(r.value.name, r.value);
    cat.defRows.push([
      r.value.name,
      r.value.op_type,
      panelOf(r.value, params),
      displayName(f, p),
      text,
    ]);
  }
}

/** One fragment's solutions/**.json; a solution of an unknown definition is reported and skipped. */
function readSolutions(f: Fragment, cat: Catalogue): void {
  for (const p of listFiles(join(f.dir, "solutions"), ".json")) {
    const text = readOrDiagnose(f, p, cat.diags);
    if (text === null) continue;
    const r = parseSolution(text, displayName(f, p));
    if (!r.ok) {
      cat.diags.push(...r.diagnostics);
      continue;
    }
    const s = r.value;
    if (!cat.defs.has(s.definition)) {
      cat.diags.push({
        level: "warning",
        file: displayName(f, p),
        path: "$.definition",
        message: `definition "${s.definition}" not found; solution "${s.name}" ignored`,
      });
      continue;
    }
    if (cat.sols.has(s.name)) continue;
    cat.sols.set(s.name, s);
    cat.solRows.push([s.name, s.definition, s.author, s.spec.language, displayName(f, p)]);
  }
}

/** One fragment's workloads/*.jsonl, with each new workload's cost. */
function readWorkloads(f: Fragment, cat: Catalogue): void {
  for (const p of listFiles(join(f.dir, "workloads"), ".jsonl")) {
    const text = readOrDiagnose(f, p, cat.diags);
    if (text === null) continue;
    const name = displayName(f, p);
    const { traces, diagnostics } = parseJsonl(text, name);
    cat.diags.push(...diagnostics);
    for (const [line, t] of traces) {
      const def = cat.defs.get(t.definition);
      if (!isWorkloadTrace(t) || !def) {
        cat.diags.push({
          level: "error",
          file: name,
          line,
          path: def ? "$.solution" : "$.definition",
          message: def
            ? "a workloads file may only hold workload traces"
            : `definition "${t.definition}" not found`,
        });
        continue;
      }
      const k = `${t.definition}\u0000${t.workload.uuid}`;
      if (cat.wlSeen.has(k)) continue;
      cat.wlSeen.add(k);
      cat.wlRows.push([t.definition, t.workload.uuid, JSON.stringify(t.workload.axes), name, line]);
      const c = workloadCost(def, t.workload.axes);
      cat.costRows.push([t.definition, t.workload.uuid, c.flops, c.bytes, c.model]);
    }
  }
}

/** Provenance: the engine's per-cell record, kept verbatim (JSON text) for the report. */
async function loadProvenance(conn: DuckDBConnection, fragments: Fragment[]): Promise<void> {
  const provRows: unknown[][] = [];
  for (const f of fragments) {
    const p = join(f.dir, "provenance.json");
    if (existsSync(p)) {
      provRows.push([f.stage, f.cellId, f.cellKey, f.dir, readFileSync(p, "utf8")]);
    }
  }
  await appendRows(conn, "provenance", provRows);
}

/** The parameters the views read: the settings row and the baseline rules, in their order. */
async function loadSettings(conn: DuckDBConnection, params: AggregateParams): Promise<void> {
  await appendRows(conn, "settings", [[
    params.fastPOperator,
    params.winP,
    params.winBaselineFallback,
    params.bandwidthTBs,
    params.tflops,
    params.winGridStep,
    params.winGridCap,
    params.leaderboardMinCoverage,
  ]]);
  const ruleRows: unknown[][] = [];
  for (const [op, rules] of Object.entries(params.baselines)) {
    rules.forEach((r, i) => ruleRows.push([op, i, r.author, r.match, r.label, r.kind]));
  }
  await appendRows(conn, "baseline_rules", ruleRows);
}

/** The fast_p grid of each panel; its maximum comes from the panel, else its op type, else "*". */
async function loadPGrid(
  conn: DuckDBConnection,
  cat: Catalogue,
  params: AggregateParams,
): Promise<void> {
  const panels = new Set(cat.defRows.map((r) => r[2] as string));
  const gridRows: unknown[][] = [];
  for (const panel of [...panels].sort()) {
    const op = [...cat.defs.values()].find((d) => panelOf(d, params) === panel)?.op_type ?? panel;
    const max = params.pGridMax[panel] ?? params.pGridMax[op] ?? params.pGridMax["*"] ?? 1.5;
    for (const p of pGrid(params.pGridStep, max)) gridRows.push([panel, p]);
  }
  await appendRows(conn, "p_grid", gridRows);
}

/**
 * Workloads seen only in traces (no workloads file) still need axes for their cost: one more
 * read_ndjson pass, made only when there are such workloads. Adds their costs to cat.costRows.
 */
async function addOrphanWorkloadCosts(
  conn: DuckDBConnection,
  files: TraceFile[],
  jsFiles: Set<string>,
  cat: Catalogue,
): Promise<void> {
  const orphans = await all(
    conn,
    `SELECT DISTINCT definition, uuid FROM traces t
     WHERE NOT EXISTS (SELECT 1 FROM workloads w WHERE w.definition = t.definition AND w.uuid = t.uuid)`,
  );
  if (orphans.length === 0 || files.length === 0) return;
  const okFiles = files.filter((x) => !jsFiles.has(x.name)).map((x) => x.path);
  const axesRows = okFiles.length === 0 ? [] : await all(
    conn,
    `SELECT definition, workload.uuid AS uuid, CAST(any_value(workload.axes) AS VARCHAR) AS axes
     FROM read_ndjson([${okFiles.map(sqlString).join(", ")}], format = 'newline_delimited',
       columns = {definition: 'VARCHAR', workload: 'STRUCT(uuid VARCHAR, axes JSON)'})
     GROUP BY ALL`,
  );
  const want = new Set(orphans.map((r) => `${r.definition}\u0000${r.uuid}`));
  for (const r of axesRows) {
    const def = cat.defs.get(r.definition as string);
    if (!def || !want.has(`${r.definition}\u0000${r.uuid}`)) continue;
    let axes: Record<string, number> = {};
    try {
      axes = JSON.parse(String(r.axes ?? "{}"));
    } catch { /* left empty: the cost becomes unknown */ }
    const c = workloadCost(def, axes);
    cat.costRows.push([r.definition, r.uuid, c.flops, c.bytes, c.model]);
  }
}

/** Runs the analysis views' .sql files in order; an error names the file. */
async function createViews(conn: DuckDBConnection): Promise<void> {
  for (const f of viewFiles()) {
    try {
      await runSqlFile(conn, f);
    } catch (e) {
      throw new Error(`${relative(SQL_DIR, f)}: ${(e as Error).message}`);
    }
  }
}
