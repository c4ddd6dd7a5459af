/**
 * Builds the aggregate database from upstream TraceSet fragments. Definitions, solutions and
 * workloads (small) go through the project's TS parsers; traces (up to millions of lines) are read
 * by DuckDB's read_ndjson straight from the JSONL files. A file DuckDB rejects, or whose rows fail
 * the checks the analysis relies on, is re-read by the TS parser, which names the file and line of
 * every bad line and keeps the good ones; the rest of the run goes on.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import type { DuckDBConnection } from "@duckdb/node-api";
import type { Diagnostic } from "../../pipeline/engine/diagnostics.ts";
import type { Definition, Solution, Trace } from "../../pipeline/trace/schema.ts";
import { isWorkloadTrace } from "../../pipeline/trace/schema.ts";
import {
  listFiles,
  parseDefinition,
  parseJsonl,
  parseSolution,
} from "../../pipeline/trace/traceset.ts";
import { all, appendRows, type ColType, runSqlFile, sqlString } from "./db.ts";
import type { AggregateParams } from "./params.ts";
import { workloadCost } from "./roofline.ts";

/** One upstream cell directory to read. */
export interface Fragment {
  stage: string;
  cellId: string;
  cellKey: string;
  dir: string;
}

/** Counts and diagnostics of a load. */
export interface LoadResult {
  definitions: number;
  workloads: number;
  solutions: number;
  traces: number;
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

/** Name under which a fragment's file appears in diagnostics and the report. */
export const displayName = (f: Fragment, abs: string) =>
  `${f.stage}/${f.cellId}/${relative(f.dir, abs)}`;

const TRACE_COLUMNS =
  `{definition: 'VARCHAR', solution: 'VARCHAR', workload: 'STRUCT(uuid VARCHAR)', ` +
  `evaluation: 'STRUCT(status VARCHAR, environment STRUCT(hardware VARCHAR), timestamp VARCHAR, ` +
  `log VARCHAR, correctness STRUCT(max_relative_error DOUBLE, max_absolute_error DOUBLE), ` +
  `performance STRUCT(latency_ms DOUBLE, reference_latency_ms DOUBLE, speedup_factor DOUBLE))'}`;

const TRACE_TYPES: ColType[] = [
  "VARCHAR",
  "INTEGER",
  "VARCHAR",
  "VARCHAR",
  "VARCHAR",
  "VARCHAR",
  "VARCHAR",
  "VARCHAR",
  "VARCHAR",
  "DOUBLE",
  "DOUBLE",
  "DOUBLE",
  "DOUBLE",
  "DOUBLE",
  "VARCHAR",
];

function traceInsertSql(paths: string[]): string {
  const list = `[${paths.map(sqlString).join(", ")}]`;
  return `INSERT INTO traces
    SELECT f.file, NULL, r.definition, r.solution, r.workload.uuid,
      r.evaluation.status, r.evaluation.environment.hardware, r.evaluation.timestamp, r.evaluation.log,
      r.evaluation.correctness.max_relative_error, r.evaluation.correctness.max_absolute_error,
      r.evaluation.performance.latency_ms, r.evaluation.performance.reference_latency_ms,
      r.evaluation.performance.speedup_factor, 'duckdb'
    FROM read_ndjson(${list}, filename = true, format = 'newline_delimited', columns = ${TRACE_COLUMNS}) r
    JOIN trace_files f ON f.path = r.filename`;
}

/** Rows the analysis cannot use; their files are re-read by the TS parser for line numbers. */
const SUSPECT_FILES_SQL = `SELECT DISTINCT t.file FROM traces t
  LEFT JOIN solutions s ON s.name = t.solution
  LEFT JOIN definitions d ON d.name = t.definition
  WHERE t.definition IS NULL OR t.solution IS NULL OR t.uuid IS NULL OR t.status IS NULL
    OR t.hardware IS NULL OR t.timestamp IS NULL
    OR t.status NOT IN (SELECT status FROM status_order)
    OR (t.status = 'PASSED' AND t.latency_ms IS NULL)
    OR (t.status <> 'PASSED' AND t.latency_ms IS NOT NULL)
    OR s.name IS NULL OR d.name IS NULL OR s.definition <> t.definition`;

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
  const diags: Diagnostic[] = [];
  let t0 = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    timings[name] = (now - t0) / 1000;
    t0 = now;
    log(`  ${name}: ${timings[name].toFixed(2)} s`);
  };
  // Row order of the raw tables carries no meaning (every view orders its output), and dropping
  // it lets DuckDB insert and copy in parallel.
  await conn.run("SET preserve_insertion_order = false");
  await runSqlFile(conn, join(SQL_DIR, "00_schema.sql"));

  // Definitions, solutions and workloads: merged across fragments, first occurrence wins.
  const defs = new Map<string, Definition>();
  const defRows: unknown[][] = [];
  const sols = new Map<string, Solution>();
  const solRows: unknown[][] = [];
  const wlRows: unknown[][] = [];
  const wlSeen = new Set<string>();
  const costRows: unknown[][] = [];
  const read = (f: Fragment, p: string): string | null => {
    try {
      return readFileSync(p, "utf8");
    } catch (e) {
      diags.push({
        level: "error",
        file: displayName(f, p),
        path: "$",
        message: `cannot read: ${(e as Error).message}`,
      });
      return null;
    }
  };
  for (const f of fragments) {
    for (const p of listFiles(join(f.dir, "definitions"), ".json")) {
      const text = read(f, p);
      if (text === null) continue;
      const r = parseDefinition(text, displayName(f, p));
      if (!r.ok) {
        diags.push(...r.diagnostics);
        continue;
      }
      if (defs.has(r.value.name)) continue;
      defs.set(r.value.name, r.value);
      defRows.push([
        r.value.name,
        r.value.op_type,
        panelOf(r.value, params),
        displayName(f, p),
        text,
      ]);
    }
  }
  for (const f of fragments) {
    for (const p of listFiles(join(f.dir, "solutions"), ".json")) {
      const text = read(f, p);
      if (text === null) continue;
      const r = parseSolution(text, displayName(f, p));
      if (!r.ok) {
        diags.push(...r.diagnostics);
        continue;
      }
      const s = r.value;
      if (!defs.has(s.definition)) {
        diags.push({
          level: "warning",
          file: displayName(f, p),
          path: "$.definition",
          message: `definition "${s.definition}" not found; solution "${s.name}" ignored`,
        });
        continue;
      }
      if (sols.has(s.name)) continue;
      sols.set(s.name, s);
      solRows.push([s.name, s.definition, s.author, s.spec.language, displayName(f, p)]);
    }
    for (const p of listFiles(join(f.dir, "workloads"), ".jsonl")) {
      const text = read(f, p);
      if (text === null) continue;
      const name = displayName(f, p);
      const { traces, diagnostics } = parseJsonl(text, name);
      diags.push(...diagnostics);
      for (const [line, t] of traces) {
        const def = defs.get(t.definition);
        if (!isWorkloadTrace(t) || !def) {
          diags.push({
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
        if (wlSeen.has(k)) continue;
        wlSeen.add(k);
        wlRows.push([t.definition, t.workload.uuid, JSON.stringify(t.workload.axes), name, line]);
        const c = workloadCost(def, t.workload.axes);
        costRows.push([t.definition, t.workload.uuid, c.flops, c.bytes, c.model]);
      }
    }
  }
  await appendRows(
    conn,
    "definitions",
    ["VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR"],
    defRows,
  );
  await appendRows(
    conn,
    "solutions",
    ["VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR"],
    solRows,
  );
  await appendRows(
    conn,
    "workloads",
    ["VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "INTEGER"],
    wlRows,
  );
  lap(`definitions, solutions, workloads (${defs.size}, ${sols.size}, ${wlRows.length})`);

  // Provenance: the engine's per-cell record, kept verbatim (JSON text) for the report.
  const provRows: unknown[][] = [];
  for (const f of fragments) {
    const p = join(f.dir, "provenance.json");
    if (existsSync(p)) {
      provRows.push([f.stage, f.cellId, f.cellKey, f.dir, readFileSync(p, "utf8")]);
    }
  }
  await appendRows(
    conn,
    "provenance",
    ["VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR"],
    provRows,
  );

  // Settings, baseline rules, p grids.
  await appendRows(conn, "settings", [
    "VARCHAR",
    "DOUBLE",
    "VARCHAR",
    "DOUBLE",
    "DOUBLE",
    "DOUBLE",
    "DOUBLE",
  ], [[
    params.fastPOperator,
    params.winP,
    params.winBaselineFallback,
    params.bandwidthTBs,
    params.tflops,
    params.winGridStep,
    params.winGridCap,
  ]]);
  const ruleRows: unknown[][] = [];
  for (const [op, rules] of Object.entries(params.baselines)) {
    rules.forEach((r, i) => ruleRows.push([op, i, r.author, r.match, r.label, r.kind]));
  }
  await appendRows(conn, "baseline_rules", [
    "VARCHAR",
    "INTEGER",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
    "VARCHAR",
  ], ruleRows);
  const panels = new Set(defRows.map((r) => r[2] as string));
  const gridRows: unknown[][] = [];
  for (const panel of [...panels].sort()) {
    const op = [...defs.values()].find((d) => panelOf(d, params) === panel)?.op_type ?? panel;
    const max = params.pGridMax[panel] ?? params.pGridMax[op] ?? params.pGridMax["*"] ?? 1.5;
    for (const p of pGrid(params.pGridStep, max)) gridRows.push([panel, p]);
  }
  await appendRows(conn, "p_grid", ["VARCHAR", "DOUBLE"], gridRows);

  // Traces.
  const files: Array<{ frag: Fragment; path: string; name: string; bytes: number }> = [];
  for (const f of fragments) {
    for (const p of listFiles(join(f.dir, "traces"), ".jsonl")) {
      files.push({ frag: f, path: p, name: displayName(f, p), bytes: statSync(p).size });
    }
  }
  await appendRows(
    conn,
    "trace_files",
    ["VARCHAR", "VARCHAR", "BIGINT", "VARCHAR", "VARCHAR"],
    files.map((x) => [x.name, x.path, x.bytes, null, firstEnvironment(x.path)]),
  );
  const jsFiles = new Set<string>();
  if (files.length > 0) {
    try {
      await conn.run(traceInsertSql(files.map((x) => x.path)));
    } catch (e) {
      // Some file has a line DuckDB cannot read: read file by file, and give the bad ones to TS.
      log(`  read_ndjson over all files failed (${firstLine(e)}); retrying file by file`);
      await conn.run("DELETE FROM traces");
      for (const x of files) {
        try {
          await conn.run(traceInsertSql([x.path]));
        } catch {
          jsFiles.add(x.name);
        }
      }
    }
    for (const r of await all(conn, SUSPECT_FILES_SQL)) jsFiles.add(r.file as string);
  }
  const viaDuck = files.length
    ? Number((await all(conn, "SELECT count(*) AS n FROM traces"))[0].n)
    : 0;
  lap(`traces via read_ndjson (${viaDuck} rows from ${files.length - jsFiles.size} files)`);

  let viaJs = 0;
  if (jsFiles.size > 0) {
    await conn.run(`DELETE FROM traces WHERE file IN (${[...jsFiles].map(sqlString).join(", ")})`);
    const deleted = viaDuck - Number((await all(conn, "SELECT count(*) AS n FROM traces"))[0].n);
    for (const x of files.filter((x) => jsFiles.has(x.name))) {
      const text = read(x.frag, x.path);
      if (text === null) continue;
      const rows = jsTraceRows(text, x.name, defs, sols, diags);
      viaJs += await appendRows(conn, "traces", TRACE_TYPES, rows);
    }
    lap(
      `traces via the TS parser (${viaJs} rows from ${jsFiles.size} files; ${deleted} DuckDB rows replaced)`,
    );
  }

  // Workloads seen only in traces (no workloads file) still need axes for their cost: one more
  // read_ndjson pass, made only when there are such workloads.
  const orphans = await all(
    conn,
    `SELECT DISTINCT definition, uuid FROM traces t
     WHERE NOT EXISTS (SELECT 1 FROM workloads w WHERE w.definition = t.definition AND w.uuid = t.uuid)`,
  );
  if (orphans.length > 0 && files.length > 0) {
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
      const def = defs.get(r.definition as string);
      if (!def || !want.has(`${r.definition}\u0000${r.uuid}`)) continue;
      let axes: Record<string, number> = {};
      try {
        axes = JSON.parse(String(r.axes ?? "{}"));
      } catch { /* left empty: the cost becomes unknown */ }
      const c = workloadCost(def, axes);
      costRows.push([r.definition, r.uuid, c.flops, c.bytes, c.model]);
    }
  }
  await appendRows(
    conn,
    "workload_cost",
    ["VARCHAR", "VARCHAR", "DOUBLE", "DOUBLE", "VARCHAR"],
    costRows,
  );
  await appendRows(
    conn,
    "diagnostics",
    ["VARCHAR", "VARCHAR", "INTEGER", "VARCHAR", "VARCHAR"],
    diags.map((d) => [d.level, d.file, d.line ?? null, d.path, d.message]),
  );
  for (const f of viewFiles()) {
    try {
      await runSqlFile(conn, f);
    } catch (e) {
      throw new Error(`${relative(SQL_DIR, f)}: ${(e as Error).message}`);
    }
  }
  lap("workload costs, diagnostics, views");
  const total = Number((await all(conn, "SELECT count(*) AS n FROM traces"))[0].n);
  return {
    definitions: defs.size,
    workloads: wlRows.length,
    solutions: sols.size,
    traces: total,
    traceFiles: files.length,
    tracesViaDuckdb: total - viaJs,
    tracesViaJs: viaJs,
    diagnostics: diags,
    timings,
  };
}

/** The evaluation environment of a traces file's first line (hardware and libs), or null. */
function firstEnvironment(path: string): string | null {
  try {
    const fd = openSync(path, "r");
    const buf = new Uint8Array(64 * 1024);
    const n = readSync(fd, buf, 0, buf.length, 0);
    closeSync(fd);
    const text = new TextDecoder().decode(buf.subarray(0, n));
    const nl = text.indexOf("\n");
    const env = JSON.parse(nl >= 0 ? text.slice(0, nl) : text)?.evaluation?.environment;
    return env ? JSON.stringify(env) : null;
  } catch {
    return null;
  }
}

const firstLine = (e: unknown) => String((e as Error).message ?? e).split("\n")[0].slice(0, 200);

/** Parses one traces file with the TS parser; every rejected line becomes a diagnostic. */
function jsTraceRows(
  text: string,
  file: string,
  defs: Map<string, Definition>,
  sols: Map<string, Solution>,
  diags: Diagnostic[],
): unknown[][] {
  const { traces, diagnostics } = parseJsonl(text, file);
  diags.push(...diagnostics);
  const rows: unknown[][] = [];
  const bad = (line: number, path: string, message: string) =>
    diags.push({ level: "error", file, line, path, message });
  for (const [line, t] of traces as Array<[number, Trace]>) {
    const ev = t.evaluation;
    if (t.solution === null || ev === null) {
      bad(
        line,
        "$.evaluation",
        "a traces file needs traces with both a solution and an evaluation",
      );
      continue;
    }
    if (!defs.has(t.definition)) {
      bad(line, "$.definition", `definition "${t.definition}" not found`);
      continue;
    }
    const sol = sols.get(t.solution);
    if (!sol) {
      bad(line, "$.solution", `solution "${t.solution}" not found`);
      continue;
    }
    if (sol.definition !== t.definition) {
      bad(
        line,
        "$.solution",
        `solution "${t.solution}" is for "${sol.definition}", not "${t.definition}"`,
      );
      continue;
    }
    rows.push([
      file,
      line,
      t.definition,
      t.solution,
      t.workload.uuid,
      ev.status,
      ev.environment.hardware,
      ev.timestamp,
      ev.log,
      ev.correctness?.max_relative_error ?? null,
      ev.correctness?.max_absolute_error ?? null,
      ev.performance?.latency_ms ?? null,
      ev.performance?.reference_latency_ms ?? null,
      ev.performance?.speedup_factor ?? null,
      "js",
    ]);
  }
  return rows;
}
