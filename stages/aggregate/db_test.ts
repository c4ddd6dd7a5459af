import { assertEquals, assertRejects } from "../../tests/assert.ts";
import { all, appendRows, closeDb, openDb } from "./db.ts";

Deno.test("appendRows appends by the table's own column types", async () => {
  const db = await openDb(":memory:");
  try {
    await db.conn.run("CREATE TABLE t (s VARCHAR, i INTEGER, d DOUBLE, b BIGINT, f BOOLEAN)");
    const n = await appendRows(db.conn, "t", [
      [7, "3", 0.5, 2.9, true],
      // Non-finite: kept in a DOUBLE column, NULL elsewhere; a missing value is NULL.
      [null, Infinity, -Infinity, NaN, false],
      ["x", undefined],
    ]);
    assertEquals(n, 3);
    assertEquals(
      await all(
        db.conn,
        "SELECT s, i, d::VARCHAR AS d, b, f, typeof(s) AS ts FROM t ORDER BY rowid",
      ),
      [
        { s: "7", i: 3, d: "0.5", b: 2, f: true, ts: "VARCHAR" },
        { s: null, i: null, d: "-inf", b: null, f: false, ts: "VARCHAR" },
        { s: "x", i: null, d: null, b: null, f: null, ts: "VARCHAR" },
      ],
    );
  } finally {
    closeDb(db);
  }
});

Deno.test("appendRows names the column whose type it cannot append", async () => {
  const db = await openDb(":memory:");
  try {
    await db.conn.run("CREATE TABLE t (s VARCHAR, stamp TIMESTAMP)");
    await assertRejects(
      () => appendRows(db.conn, "t", [["a", "2026-01-01"]]),
      /^appendRows: t\.stamp is TIMESTAMP, which it cannot append$/,
    );
  } finally {
    closeDb(db);
  }
});
