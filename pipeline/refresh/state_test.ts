/** The night's state: the harness's spread per timed cell, and the leaderboard read from the report. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertAlmostEquals, assertEquals } from "../../tests/assert.ts";
import { parseCsv } from "../lib/mod.ts";
import { readLeaderboard, timingSpread } from "./state.ts";

Deno.test("timingSpread: round medians apart over the median; one round: IQR over the median", () => {
  const two = {
    details: { candidate: { median_ms: 2, iqr_ms: 0.1, rounds: [[1.9, 2.0, 2.1], [2.1, 2.2]] } },
  };
  // Round medians 2.0 and 2.15: 0.15 / 2.
  assertAlmostEquals(timingSpread(two)!, 0.075, 1e-9);
  const one = { details: { candidate: { median_ms: 2, iqr_ms: 0.1, rounds: [[1, 2, 3]] } } };
  assertAlmostEquals(timingSpread(one)!, 0.05, 1e-9);
  assertEquals(timingSpread({ details: {} }), null);
  assertEquals(timingSpread(null), null);
});

Deno.test("parseCsv reads quoted fields, and the leaderboard keeps unranked authors", () => {
  assertEquals(parseCsv('a,b\n1,"x, ""y"""\r\n2,\n'), [{ a: "1", b: 'x, "y"' }, { a: "2", b: "" }]);
  const dir = mkdtempSync(join(tmpdir(), "tp-state-"));
  try {
    mkdirSync(join(dir, "tables"));
    writeFileSync(
      join(dir, "tables", "table_c_win_at_p_leaderboard.csv"),
      "rank,author,p,n_total,n_wins,win_pct\n1,alice,0.95,5,4,80\n,bob,0.95,1,1,100\n",
    );
    assertEquals(readLeaderboard(dir), [
      { author: "alice", rank: 1, win_pct: 80 },
      { author: "bob", rank: null, win_pct: 100 },
    ]);
    assertEquals(readLeaderboard(join(dir, "none")), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
