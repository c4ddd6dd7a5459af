/**
 * Loads the traces files: DuckDB's read_ndjson reads them all in one pass; a file it rejects, or
 * whose rows fail the checks the analysis relies on, is re-read by the TS parser, which names the
 * file and line of every bad line and keeps the good ones.
 */
import { closeSync, openSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import type { DuckDBConnection } from "@duckdb/node-api";
import type { Diagnostic } from "../../pipeline/engine/mod.ts";
import {
  type Definition,
  listFiles,
  parseJsonl,
  type Solution,
  type Trace,
} from "../../pipeline/trace/mod.ts";
import { all, appendRows, sqlString } from "./db.ts";
import { displayName, type Fragment, readOrDiagnose } from "./fragment.ts";

const TRACE_COLUMNS =
  `{definition: 'VARCHAR', solution: 'VARCHAR', workload: 'STRUCT(uuid VARCHAR)', ` +
  `evaluation: 'STRUCT(status VARCHAR, environment STRUCT(hardware VARCHAR), timestamp VARCHAR, ` +
  `log VARCHAR, correctness STRUCT(max_relative_error DOUBLE, max_absolute_error DOUBLE), ` +
  `performance STRUCT(latency_ms DOUBLE, reference_latency_ms DOUBLE, speedup_factor DOUBLE))'}`;

/** Inserts the traces of the given files, read by read_ndjson, into the traces table. */
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

/** Rows in the traces table. */
export const countTraces = async (conn: DuckDBConnection) =>
  Number((await all(conn, "SELECT count(*) AS n FROM traces"))[0].n);

/** What a trace line is checked against, and where its diagnostics go. */
export interface TraceChecks {
  defs: Map<string, Definition>;
  sols: Map<string, Solution>;
  diags: Diagnostic[];
}

/** One traces file of a fragment. */
export interface TraceFile {
  frag: Fragment;
  path: string;
  name: string;
  bytes: number;
}

/** Lists every fragment's traces/**.jsonl and appends them to trace_files. */
export async function loadTraceFiles(
  conn: DuckDBConnection,
  fragments: Fragment[],
): Promise<TraceFile[]> {
  const files: TraceFile[] = [];
  for (const f of fragments) {
    for (const p of listFiles(join(f.dir, "traces"), ".jsonl")) {
      files.push({ frag: f, path: p, name: displayName(f, p), bytes: statSync(p).size });
    }
  }
  await appendRows(
    conn,
    "trace_files",
    files.map((x) => [
      x.name,
      x.path,
      x.bytes,
      null,
      firstEnvironment(x.path),
      x.frag.origin ?? "judged",
    ]),
  );
  return files;
}

/**
 * Reads every traces file with read_ndjson in one pass; returns the names of the files to re-read
 * with the TS parser: those DuckDB rejects, and those with rows the analysis cannot use.
 */
export async function loadTracesViaDuckdb(
  conn: DuckDBConnection,
  files: TraceFile[],
  log: (msg: string) => void,
): Promise<Set<string>> {
  const jsFiles = new Set<string>();
  if (files.length === 0) return jsFiles;
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
  return jsFiles;
}

/**
 * Replaces the rows DuckDB read from the files in jsFiles by the TS parser's, which name the file
 * and line of every bad line (into checks.diags). Returns the rows appended and the rows replaced.
 */
export async function reloadTracesViaJs(
  conn: DuckDBConnection,
  files: TraceFile[],
  jsFiles: Set<string>,
  viaDuck: number,
  checks: TraceChecks,
): Promise<{ rows: number; deleted: number }> {
  await conn.run(`DELETE FROM traces WHERE file IN (${[...jsFiles].map(sqlString).join(", ")})`);
  const deleted = viaDuck - await countTraces(conn);
  let rows = 0;
  for (const x of files.filter((x) => jsFiles.has(x.name))) {
    const text = readOrDiagnose(x.frag, x.path, checks.diags);
    if (text === null) continue;
    const traceRows = jsTraceRows(text, x.name, checks);
    rows += await appendRows(conn, "traces", traceRows);
  }
  return { rows, deleted };
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
function jsTraceRows(text: string, file: string, checks: TraceChecks): unknown[][] {
  const { defs, sols, diags } = checks;
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
