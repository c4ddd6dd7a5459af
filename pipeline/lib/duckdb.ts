/** DuckDB, opened the one way every stage uses it. */
import type { DuckDBConnection } from "@duckdb/node-api";

/**
 * Opens an in-memory DuckDB (2 threads: the CI machine's cores). The package loads here, not when a
 * stage's module does: a GPU machine carries no DuckDB (docs/GPU.md), and `reproduce --set
 * extract.…` there loads the extract stage to check the key without running it.
 */
export async function openDuckDB(): Promise<{ con: DuckDBConnection; close: () => void }> {
  const { DuckDBInstance } = await import("@duckdb/node-api");
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
