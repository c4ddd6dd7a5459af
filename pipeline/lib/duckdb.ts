/** DuckDB, opened the one way every stage uses it. */
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";

/** Opens an in-memory DuckDB (2 threads: the CI machine's cores). */
export async function openDuckDB(): Promise<{ con: DuckDBConnection; close: () => void }> {
  const inst = await DuckDBInstance.create(":memory:", { threads: "2" });
  const con = await inst.connect();
  return {
    con,
    close: () => {
      con.closeSync();
      inst.closeSync();
    },
  };
}
