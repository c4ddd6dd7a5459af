/** Thin helpers over @duckdb/node-api: open, run .sql files, read rows as plain JS, append rows. */
import { readFileSync } from "node:fs";
import { DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";

/** An open database and its connection. */
export interface Db {
  instance: DuckDBInstance;
  conn: DuckDBConnection;
}

/** Opens (creating) a DuckDB database file, or an in-memory one for ":memory:". */
export async function openDb(path: string): Promise<Db> {
  const instance = await DuckDBInstance.create(path);
  const conn = await instance.connect();
  return { instance, conn };
}

/** Closes the connection and the instance (flushing the file). */
export function closeDb(db: Db): void {
  db.conn.closeSync();
  db.instance.closeSync();
}

/** Runs every statement of a .sql file. */
export async function runSqlFile(conn: DuckDBConnection, path: string): Promise<void> {
  await conn.run(readFileSync(path, "utf8"));
}

/** A row as plain JS values: BIGINT/HUGEINT become numbers, lists become arrays. */
export type Row = Record<string, unknown>;

function plain(v: unknown): unknown {
  if (typeof v === "bigint") return Number(v);
  if (Array.isArray(v)) return v.map(plain);
  return v;
}

/** Runs a query and returns its rows as plain objects (column order kept). */
export async function all(conn: DuckDBConnection, sql: string): Promise<Row[]> {
  const reader = await conn.runAndReadAll(sql);
  return reader.getRowObjectsJS().map((r) => {
    const o: Row = {};
    for (const [k, v] of Object.entries(r)) o[k] = plain(v);
    return o;
  });
}

/** Column names of a query's result, even when it has no rows. */
export async function columnsOf(conn: DuckDBConnection, sql: string): Promise<string[]> {
  const reader = await conn.runAndReadAll(`SELECT * FROM (${sql}) LIMIT 0`);
  return reader.columnNames();
}

const APPENDED_TYPES = ["VARCHAR", "DOUBLE", "INTEGER", "BIGINT", "BOOLEAN"] as const;
/** SQL type of an appended column, as far as the appender needs to know. */
type ColType = typeof APPENDED_TYPES[number];

/**
 * The type of each column of `table`, in order, read from the database: its CREATE TABLE
 * (sql/00_schema.sql, or the caller's) is the one place a column's type is written.
 */
async function columnTypes(conn: DuckDBConnection, table: string): Promise<ColType[]> {
  const cols = await all(
    conn,
    `SELECT name, type FROM pragma_table_info(${sqlString(table)}) ORDER BY cid`,
  );
  return cols.map(({ name, type }) => {
    const t = APPENDED_TYPES.find((a) => a === type);
    if (!t) throw new Error(`appendRows: ${table}.${name} is ${type}, which it cannot append`);
    return t;
  });
}

/**
 * Appends rows (arrays in the table's column order) to a table; null/undefined become NULL, and so
 * does a non-finite number in a column that is not DOUBLE.
 */
export async function appendRows(
  conn: DuckDBConnection,
  table: string,
  rows: Iterable<unknown[]>,
): Promise<number> {
  const types = await columnTypes(conn, table);
  const app = await conn.createAppender(table);
  let n = 0;
  try {
    for (const row of rows) {
      types.forEach((t, i) => {
        const v = row[i];
        if (
          v === null || v === undefined ||
          (typeof v === "number" && !Number.isFinite(v) && t !== "DOUBLE")
        ) {
          app.appendNull();
        } else if (t === "VARCHAR") app.appendVarchar(String(v));
        else if (t === "DOUBLE") app.appendDouble(Number(v));
        else if (t === "INTEGER") app.appendInteger(Number(v));
        else if (t === "BOOLEAN") app.appendBoolean(Boolean(v));
        else app.appendBigInt(BigInt(Math.trunc(Number(v))));
      });
      app.endRow();
      n++;
    }
    app.flushSync();
  } finally {
    app.closeSync();
  }
  return n;
}

/** Quotes a string as a SQL literal. */
export const sqlString = (s: string) => `'${s.replaceAll("'", "''")}'`;
