/**
 * Solutions generate rejected (entry symbol missing, signature not matching the definition) count as
 * failures: generate writes each with a COMPILE_ERROR trace in its cell's rejected/ folder, and
 * aggregate counts it failed on every workload judged of its definition, in Table A and both
 * taxonomies, with the reason. Fixture: tests/fixtures/aggregate/rejected/generate-cell, the real
 * generate corpus cell of rejected/corpus (make_rejected.ts), beside the `basic` run.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CellResult } from "../../pipeline/engine/mod.ts";
import { loadTraceSet } from "../../pipeline/trace/mod.ts";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import { all, closeDb, openDb } from "./db.ts";
import { type Fragment, loadDatabase } from "./load.ts";
import { AggregateParams } from "./params.ts";
import { fragmentsOf, runAggregate } from "./stage.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const CELL = join(ROOT, "tests/fixtures/aggregate/rejected/generate-cell");
const BASIC = join(ROOT, "tests/fixtures/aggregate/basic");

function fragments(): Fragment[] {
  const cell: CellResult = { id: "corpus/corpus", key: "k", digest: "d", dir: CELL, summary: null };
  return [
    { stage: "fixture", cellId: "basic", cellKey: "k", dir: BASIC },
    ...fragmentsOf({ generate: [cell] }),
  ];
}

Deno.test("generate's rejected/ folder is a valid TraceSet of COMPILE_ERROR traces", () => {
  const { set, diagnostics } = loadTraceSet(join(CELL, "rejected"), { checkBlobs: true });
  assertEquals(diagnostics, []);
  assertEquals([...set.solutions.keys()].sort(), [
    "carol_gemm_bad_signature",
    "carol_gemm_no_entry",
    "carol_rms_bad_signature",
  ]);
  assertEquals(set.traces.map((t) => t.evaluation?.status), Array(3).fill("COMPILE_ERROR"));
  // The cell's own solutions (what compile, verify and time judge) hold only the accepted one.
  assertEquals([...loadTraceSet(CELL).set.solutions.keys()], ["carol_gemm_ok"]);
  assertEquals(
    fragmentsOf({ generate: [{ id: "c", key: "k", digest: "d", dir: CELL, summary: null }] })
      .map((f) => [f.cellId, f.origin ?? "judged"]),
    [["c", "judged"], ["c/rejected", "rejected"]],
  );
});

Deno.test("rejected solutions fail every judged workload of their definition: Table A and taxonomies", async () => {
  const db = await openDb(":memory:");
  try {
    const res = await loadDatabase(db.conn, fragments(), AggregateParams.parse({}), () => {});
    assertEquals(res.rejectedSolutions, 3);
    const q = (sql: string) => all(db.conn, sql);
    // gemm was judged on g1, g2, g3 and rmsnorm on r1, r2: 3 + 3 + 2 failed cells, none passed.
    const a = await q(
      "SELECT * FROM correctness_rate_by_language_author WHERE author = 'carol'",
    );
    assertEquals(
      a.map((r) => [r.language, r.n_solutions, r.n_cells, r.n_passed, r.correctness_pct]),
      [["python", 3, 8, 0, 0]],
    );
    const st = await q("SELECT status, n_runs FROM status_taxonomy WHERE author = 'carol'");
    assertEquals(st.map((r) => [r.status, r.n_runs]), [["COMPILE_ERROR", 8]]);
    const ce = await q("SELECT * FROM compile_error_taxonomy WHERE language = 'python'");
    assertEquals(ce.map((r) => [r.category, r.n_runs, r.n_solutions]), [[
      "entry point / signature",
      8,
      3,
    ]]);
    assertMatch(String(ce[0].example), /rejected by generate: .*carol_gemm_bad_signature\.json/);
    const why = await q(
      "SELECT DISTINCT solution, first_error FROM compile_error_runs WHERE author = 'carol' ORDER BY 1",
    );
    assertMatch(String(why[1].first_error), /entry symbol "run" is not defined at the top level/);
    // Nothing else moved: the other authors' cells are basic's.
    const alice = await q(
      "SELECT n_cells FROM correctness_rate_by_language_author WHERE author = 'alice' AND language = 'cuda'",
    );
    assertEquals(alice[0].n_cells, 6);
  } finally {
    closeDb(db);
  }
});

Deno.test("the report names the rejected solutions and never their placeholder hardware", async () => {
  const out = mkdtempSync(join(tmpdir(), "agg-rej-"));
  try {
    const s = await runAggregate({
      fragments: fragments(),
      params: AggregateParams.parse({}),
      outDir: out,
      root: ROOT,
      log: () => {},
    });
    assertEquals(s.counts.rejected_solutions, 3);
    assertEquals(s.counts.traces, 21); // basic's; the rejected runs are counted apart
    const html = readFileSync(join(out, "index.html"), "utf8");
    assertMatch(html, /3 solutions were rejected by generate/);
    assertMatch(html, /GPU of the evaluations: NVIDIA H100 80GB HBM3\./);
    assert(
      !html.includes("rejected by tracepipe generate before any build"),
      "placeholder hardware",
    );
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
