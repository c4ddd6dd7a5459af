/**
 * Tables A, B and C on the fixture tests/fixtures/aggregate/basic, against values computed by
 * hand. The fixture (latencies in ms; P = PASSED, CE = COMPILE_ERROR, IN = INCORRECT_NUMERICAL,
 * RTE = RUNTIME_ERROR, TO = TIMEOUT):
 *
 *   gemm_n4_k4 (op gemm; baseline torch_matmul_gemm, by author "baseline")
 *                        g1        g2              g3
 *     torch_matmul_gemm  P 1.0     P 2.0           RTE        <- no baseline latency on g3
 *     alice_cuda_gemm_1  P 2.0     P 1.0           P 1.0
 *     alice_cuda_gemm_2  P 0.5     CE              CE         <- several solutions per author
 *     alice_triton_gemm  IN        P 4.0           -          <- missing workload g3
 *     bob_cuda_gemm      P 1.0     P 2.0, P 1.0    -          (+ a malformed line 2 in its file)
 *   rmsnorm_h8 (op rmsnorm; baseline flashinfer_wrapper_rms)
 *                             r1        r2
 *     flashinfer_wrapper_rms  P 0.01    P 0.02
 *     alice_triton_rms        P 0.005   P 0.04
 *     bob_triton_rms          TO        P 0.01, RTE
 */
import { assert, assertAlmostEquals, assertEquals, assertMatch } from "../../tests/assert.ts";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../../pipeline/engine/mod.ts";
import { all, closeDb, openDb, type Row } from "./db.ts";
import { type Fragment, loadDatabase, pGrid } from "./load.ts";
import { AggregateParams } from "./params.ts";
import { publishReports, runAggregate } from "./stage.ts";
import { BASIC } from "./testdata/fixture_run.ts";

const EMPTY = join(REPO_ROOT, "tests/fixtures/aggregate/empty");
const frag = (dir: string): Fragment => ({ stage: "fixture", cellId: "basic", cellKey: "k", dir });
const quiet = () => {};

async function withDb<T>(
  params: Partial<AggregateParams>,
  f: (q: (sql: string) => Promise<Row[]>) => Promise<T>,
) {
  const db = await openDb(":memory:");
  try {
    const res = await loadDatabase(db.conn, [frag(BASIC)], AggregateParams.parse(params), quiet);
    // The malformed line is reported with its file and line; the rest of that file still loads.
    assertEquals(res.diagnostics.length, 1);
    assertEquals(res.diagnostics[0].file, "fixture/basic/traces/bob/gemm/gemm_n4_k4.jsonl");
    assertEquals(res.diagnostics[0].line, 2);
    assertMatch(res.diagnostics[0].message, /malformed JSON/);
    assertEquals(res.traces, 21); // 22 lines, one malformed
    assertEquals(res.tracesViaJs, 3); // bob's GEMM file went through the TS parser
    return await f((sql) => all(db.conn, sql));
  } finally {
    closeDb(db);
  }
}

Deno.test("Table A: correctness rate by language x author", async () => {
  await withDb({}, async (q) => {
    const rows = await q("SELECT * FROM correctness_rate_by_language_author");
    const get = (a: string, l: string) => rows.find((r) => r.author === a && r.language === l)!;
    // alice/cuda: gemm_1 3 of 3 cells passed, gemm_2 1 of 3 -> 4/6 = 66.7 %; solutions all passed 1/2 = 50 %.
    assertEquals([get("alice", "cuda").n_cells, get("alice", "cuda").n_passed], [6, 4]);
    assertEquals(get("alice", "cuda").correctness_pct, 66.7);
    assertEquals(get("alice", "cuda").solutions_all_passed_pct, 50);
    // alice/triton: triton_gemm 1 of 2 (g1 IN), triton_rms 2 of 2 -> 3/4 = 75 %.
    assertEquals(get("alice", "triton").correctness_pct, 75);
    // bob/cuda: g1 P, g2 P+P (both runs passed) -> 2/2 = 100 %; the malformed line is not a cell.
    assertEquals(get("bob", "cuda").correctness_pct, 100);
    // bob/triton: r1 TO; r2 has P and RTE, and a cell passes only if every run passed -> 0/2 = 0 %.
    assertEquals(get("bob", "triton").correctness_pct, 0);
    // baseline/python: torch 2 of 3 (g3 RTE) + flashinfer 2 of 2 -> 4/5 = 80 %.
    assertEquals(get("baseline", "python").correctness_pct, 80);
    assertEquals(get("baseline", "python").is_baseline_author, true);
  });
});

Deno.test("Table B: fast_p with ties at p, no-baseline and missing workloads", async () => {
  await withDb({}, async (q) => {
    const rows = await q("SELECT * FROM fast_p_by_op_language_author");
    const fp = (panel: string, lang: string, a: string, p: number) =>
      rows.find((r) =>
        r.panel === panel && r.language === lang && r.author === a &&
        Math.abs(Number(r.p) - p) < 1e-9
      )!;
    // gemm/cuda/alice: g3 has no baseline latency -> N = 2 (g1, g2), n_without_baseline = 1.
    // Best cell per workload over both solutions: g1 min(2.0, 0.5) = 0.5 -> s = 1.0/0.5 = 2.0;
    // g2 1.0 (gemm_1; gemm_2 CE) -> s = 2.0/1.0 = 2.0. fast_p = 2/2 below p = 2; p = 2 does not count.
    assertEquals(fp("gemm", "cuda", "alice", 0).n_workloads, 2);
    assertEquals(fp("gemm", "cuda", "alice", 0).n_without_baseline, 1);
    assertEquals(fp("gemm", "cuda", "alice", 1.5).fast_p, 1);
    // gemm/triton/alice: g1 IN (not correct), g2 s = 2.0/4.0 = 0.5 -> 1/2 for p < 0.5; at p = 0.5 the
    // tie does not count (strict '>'): 0/2.
    assertEquals(fp("gemm", "triton", "alice", 0).fast_p, 0.5);
    assertEquals(fp("gemm", "triton", "alice", 0.4).fast_p, 0.5);
    assertEquals(fp("gemm", "triton", "alice", 0.5).fast_p, 0);
    // gemm/cuda/bob: g1 s = 1.0/1.0 = 1.0, g2 s = 2.0/min(2.0, 1.0) = 2.0; g3 never run but has no
    // baseline, so N = 2. p = 0.9 -> 2/2; p = 1.0 (tie) -> 1/2; p = 1.5 -> 1/2.
    assertEquals(fp("gemm", "cuda", "bob", 0.9).fast_p, 1);
    assertEquals(fp("gemm", "cuda", "bob", 1.0).fast_p, 0.5);
    assertEquals(fp("gemm", "cuda", "bob", 1.5).fast_p, 0.5);
    // rmsnorm/triton/alice: r1 s = 0.01/0.005 = 2.0, r2 s = 0.02/0.04 = 0.5. p = 0 -> 2/2;
    // p = 0.5 (tie on r2) -> 1/2; p = 1.9 -> 1/2; p = 2.0 (tie on r1) -> 0/2. Grid runs to 4.0.
    assertEquals(fp("rmsnorm", "triton", "alice", 0).fast_p, 1);
    assertEquals(fp("rmsnorm", "triton", "alice", 0.5).fast_p, 0.5);
    assertEquals(fp("rmsnorm", "triton", "alice", 1.9).fast_p, 0.5);
    assertEquals(fp("rmsnorm", "triton", "alice", 2.0).fast_p, 0);
    assertEquals(fp("rmsnorm", "triton", "alice", 4.0).fast_p, 0);
    // rmsnorm/triton/bob: r1 TO, r2 cell failed (one RTE run) -> no correct workload: 0/2 at p = 0.
    assertEquals(fp("rmsnorm", "triton", "bob", 0).fast_p, 0);
    assertEquals(fp("rmsnorm", "triton", "bob", 0).n_workloads, 2);
    // Grids: gemm 0..1.5 (16 points), rmsnorm 0..4.0 (41 points), per (author, language).
    assertEquals(
      rows.filter((r) => r.panel === "gemm" && r.author === "alice" && r.language === "cuda")
        .length,
      16,
    );
    assertEquals(rows.filter((r) => r.panel === "rmsnorm" && r.author === "alice").length, 41);
  });
});

Deno.test("Table B: '>=' (web leaderboard) counts the ties", async () => {
  await withDb({ fastPOperator: ">=" }, async (q) => {
    const rows = await q("SELECT * FROM fast_p_by_op_language_author WHERE p = 0.5 OR p = 2.0");
    const fp = (lang: string, a: string, panel: string, p: number) =>
      rows.find((r) => r.language === lang && r.author === a && r.panel === panel && r.p === p)!
        .fast_p;
    // gemm/triton/alice at p = 0.5: s = 0.5 >= 0.5 -> 1/2; rmsnorm/triton/alice at p = 2.0: 1/2.
    assertEquals(fp("triton", "alice", "gemm", 0.5), 0.5);
    assertEquals(fp("triton", "alice", "rmsnorm", 2.0), 0.5);
  });
});

Deno.test("Table C: win@0.95 leaderboard with flashinfer-bench semantics", async () => {
  await withDb({}, async (q) => {
    const rows = await q("SELECT * FROM win_at_p_leaderboard");
    // Groups with traces: g1, g2, g3, r1, r2 = 5. References: g1 1.0, g2 2.0, r1 0.01, r2 0.02 (baseline);
    // g3: the baseline failed, so the fastest author's run, alice_cuda_gemm_1's 1.0.
    // alice (min PASSED run per group): g1 0.5 -> r 2.0; g2 1.0 -> 2.0; g3 1.0 -> 1.0; r1 0.005 -> 2.0;
    //   r2 0.04 -> 0.5. Wins (r > 0.95): 4 of 5 = 80 %; evaluated 5/5 = 100 %.
    // bob: g1 1.0 -> 1.0; g2 min(2.0, 1.0) -> 2.0; r1 TO -> loss; r2 min PASSED run 0.01 -> 2.0 (the
    //   RTE run does not matter here, unlike in Table A). g3 not attempted. Wins 3 of 4 = 75 %;
    //   evaluated 4/5 = 80 %.
    // Correctness (cells, all languages): alice 3+1+1+2 = 7 of 10 = 70 %; bob 2+0 of 4 = 50 %.
    assertEquals(
      rows.map((
        r,
      ) => [r.rank, r.author, r.n_wins, r.n_total, r.win_pct, r.pct_evaluated, r.correctness_pct]),
      [
        [1, "alice", 4, 5, 80, 100, 70],
        [2, "bob", 3, 4, 75, 80, 50],
      ],
    );
    const ref = await q("SELECT * FROM win_reference WHERE uuid = 'g3'");
    assertEquals([ref[0].ref_ms, ref[0].ref_source], [1, "fastest author"]);
    // Curve: at p = 1.0 the ties do not win: alice r > 1 on g1, g2, r1 = 3/5; bob on g2, r2 = 2/4.
    const curve = await q(
      "SELECT author, p, win FROM win_at_p_curve WHERE p = 1.0 OR p = 0 ORDER BY author, p",
    );
    assertEquals(curve.map((r) => [r.author, r.p, r.win]), [["alice", 0, 1], ["alice", 1, 0.6], [
      "bob",
      0,
      0.75,
    ], [
      "bob",
      1,
      0.5,
    ]]);
  });
});

Deno.test("Table C: fallback 'none' gives the no-baseline group no reference (a loss for all)", async () => {
  await withDb({ winBaselineFallback: "none" }, async (q) => {
    const rows = await q(
      "SELECT author, n_wins, n_total FROM win_at_p_leaderboard ORDER BY author",
    );
    // alice loses g3 now (3 of 5); bob never attempted g3 (3 of 4).
    assertEquals(rows.map((r) => [r.author, r.n_wins, r.n_total]), [["alice", 3, 5], [
      "bob",
      3,
      4,
    ]]);
  });
});

Deno.test("baselines, taxonomy, roofline and per-definition summary", async () => {
  await withDb({}, async (q) => {
    const bl = await q("SELECT * FROM baseline_by_op_type ORDER BY op_type");
    assertEquals(bl.map((r) => [r.op_type, r.label, r.is_fallback]), [
      ["gemm", "torch.matmul (cuBLAS)", false],
      ["rmsnorm", "FlashInfer", false],
    ]);
    const ce = await q("SELECT * FROM compile_error_taxonomy");
    assertEquals(ce.map((r) => [r.language, r.category, r.n_runs, r.n_solutions]), [
      ["cuda", "undefined name / API misuse", 2, 1],
    ]);
    // gemm g1 (M=1, N=K=4, fp16): FLOPs 2·1·4·4 = 32; bytes (4 + 16 + 4)·2 = 48. Memory-bound on the
    // H100 ceilings: 48 B / 3.001e12 B/s = 1.5995e-11 s = 1.5995e-8 ms.
    const rf = await q(
      "SELECT * FROM roofline_per_cell WHERE solution = 'alice_cuda_gemm_2' AND uuid = 'g1'",
    );
    assertEquals([rf[0].flops, rf[0].bytes, rf[0].bound], [32, 48, "memory"]);
    assertAlmostEquals(Number(rf[0].roofline_ms), 48 / 3.001e12 * 1e3, 1e-15);
    const ds = await q("SELECT * FROM definition_summary ORDER BY definition");
    assertEquals(
      ds.map((r) => [r.definition, r.n_workloads, r.n_solutions, r.n_workloads_with_baseline]),
      [
        ["gemm_n4_k4", 3, 4, 2],
        ["rmsnorm_h8", 2, 2, 2],
      ],
    );
  });
});

Deno.test("torch fallback where FlashInfer is absent is said in the caption", async () => {
  // Same fixture, but the rmsnorm baseline rule prefers a FlashInfer name that no solution has.
  const params = AggregateParams.parse({
    baselines: {
      "*": [
        {
          author: "baseline",
          match: "^flashinfer_absent",
          label: "FlashInfer",
          kind: "flashinfer",
        },
        { author: "baseline", match: "", label: "torch (FlashInfer absent)", kind: "torch" },
      ],
      gemm: [{
        author: "baseline",
        match: "^torch_matmul",
        label: "torch.matmul (cuBLAS)",
        kind: "torch",
      }],
    },
  });
  const out = mkdtempSync(join(tmpdir(), "agg-"));
  try {
    await runAggregate({
      fragments: [frag(BASIC)],
      params,
      outDir: out,
      root: REPO_ROOT,
      log: quiet,
    });
    const md = readFileSync(
      join(out, "tables", "table_a_correctness_by_language_author.md"),
      "utf8",
    );
    assertMatch(md, /rmsnorm → torch \(FlashInfer absent\) \(fallback/);
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

Deno.test("solutions never evaluated count nowhere: not in the baseline caption, not in fast_p", async () => {
  // The fixture plus a definition (op type silu) that has a solution but was never evaluated, and
  // a gemm solution by carol that never ran (not runnable on the judging machine, say).
  const data = mkdtempSync(join(tmpdir(), "agg-data-"));
  const out = mkdtempSync(join(tmpdir(), "agg-"));
  try {
    cpSync(BASIC, data, { recursive: true });
    const def = JSON.parse(readFileSync(join(data, "definitions/rmsnorm/rmsnorm_h8.json"), "utf8"));
    mkdirSync(join(data, "definitions/silu"));
    writeFileSync(
      join(data, "definitions/silu/silu_h8.json"),
      JSON.stringify({ ...def, name: "silu_h8", op_type: "silu" }),
    );
    const solPath = "solutions/alice/rmsnorm/rmsnorm_h8/alice_triton_rms.json";
    const sol = JSON.parse(readFileSync(join(data, solPath), "utf8"));
    mkdirSync(join(data, "solutions/alice/silu/silu_h8"), { recursive: true });
    writeFileSync(
      join(data, "solutions/alice/silu/silu_h8/alice_silu.json"),
      JSON.stringify({ ...sol, name: "alice_silu", definition: "silu_h8" }),
    );
    mkdirSync(join(data, "solutions/carol/gemm/gemm_n4_k4"), { recursive: true });
    writeFileSync(
      join(data, "solutions/carol/gemm/gemm_n4_k4/carol_cuda_gemm.json"),
      JSON.stringify({
        ...sol,
        name: "carol_cuda_gemm",
        author: "carol",
        definition: "gemm_n4_k4",
      }),
    );
    // Baselines for gemm only: rmsnorm was evaluated without one.
    const params = AggregateParams.parse({
      baselines: {
        gemm: [{ author: "baseline", match: "^torch_matmul", label: "cuBLAS", kind: "torch" }],
      },
    });
    await runAggregate({
      fragments: [frag(data)],
      params,
      outDir: out,
      root: REPO_ROOT,
      log: quiet,
    });
    const md = readFileSync(join(out, "tables", "baseline_choice.md"), "utf8");
    assertMatch(
      md,
      /gemm → cuBLAS \[1 def\.\]; rmsnorm → none \(no baseline solution; speedups undefined\) \[1 def\.\]\./,
    );
    assert(!md.includes("silu →"), "an unevaluated definition is not in the caption");
    const fastP = readFileSync(join(out, "tables", "table_b_fast_p.csv"), "utf8");
    assert(fastP.includes(",alice,"), "evaluated authors are there");
    assert(
      !fastP.includes(",carol,"),
      "an author whose solution never ran is not counted as failing",
    );
  } finally {
    rmSync(data, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  }
});

Deno.test("runAggregate writes every table, chart and the report; publishReports copies them", async () => {
  const out = mkdtempSync(join(tmpdir(), "agg-"));
  const pub = mkdtempSync(join(tmpdir(), "pub-"));
  try {
    const s = await runAggregate({
      fragments: [frag(BASIC)],
      params: AggregateParams.parse({}),
      outDir: out,
      root: REPO_ROOT,
      log: quiet,
    });
    assertEquals(s.counts.traces, 21);
    for (const t of s.tables) {
      assert(existsSync(join(out, "tables", `${t}.csv`)), t);
      assert(existsSync(join(out, "tables", `${t}.md`)), t);
    }
    for (const c of s.charts) {
      assertMatch(readFileSync(join(out, "charts", `${c}.svg`), "utf8"), /^<svg/);
    }
    const html = readFileSync(join(out, "index.html"), "utf8");
    assertMatch(html, /Table A/);
    assertMatch(html, /href="traces\/fixture\/basic\/traces\/alice\/gemm\/gemm_n4_k4.jsonl"/);
    assert(existsSync(join(out, "traces/fixture/basic/traces/alice/gemm/gemm_n4_k4.jsonl")));
    assert(existsSync(join(out, "tracepipe.duckdb")));
    const csv = readFileSync(join(out, "tables", "table_c_win_at_p_leaderboard.csv"), "utf8");
    assertEquals(csv.split("\n")[1], "1,alice,5/5 (100.0 %),true,0.95,5,4,80,100,70");
    const copied = publishReports(out, pub);
    assert(copied.includes("index.html"));
    assert(readdirSync(join(pub, "tables")).length >= 2 * s.tables.length);
  } finally {
    rmSync(out, { recursive: true, force: true });
    rmSync(pub, { recursive: true, force: true });
  }
});

Deno.test("Table C ranks only authors of comparable coverage; the headline states coverage", async () => {
  // The fixture plus carol, judged on one group of five (r1), where she beats the baseline 10x: by
  // win@p alone she would lead with 100 %. Coverage: alice 5/5, bob 4/5, carol 1/5; the bar is 80 %
  // of the best-covered author's 5 groups, so carol is listed after the ranked authors, unranked.
  const data = mkdtempSync(join(tmpdir(), "agg-data-"));
  const out = mkdtempSync(join(tmpdir(), "agg-"));
  try {
    cpSync(BASIC, data, { recursive: true });
    const solPath = "solutions/alice/rmsnorm/rmsnorm_h8/alice_triton_rms.json";
    const sol = JSON.parse(readFileSync(join(data, solPath), "utf8"));
    mkdirSync(join(data, "solutions/carol/rmsnorm/rmsnorm_h8"), { recursive: true });
    writeFileSync(
      join(data, "solutions/carol/rmsnorm/rmsnorm_h8/carol_rms.json"),
      JSON.stringify({ ...sol, name: "carol_rms", author: "carol" }),
    );
    const line = readFileSync(join(data, "traces/alice/rmsnorm/rmsnorm_h8.jsonl"), "utf8")
      .split("\n")[0];
    const t = JSON.parse(line);
    t.solution = "carol_rms";
    t.evaluation.performance = { latency_ms: 0.001, reference_latency_ms: 10, speedup_factor: 1e4 };
    mkdirSync(join(data, "traces/carol/rmsnorm"), { recursive: true });
    writeFileSync(join(data, "traces/carol/rmsnorm/rmsnorm_h8.jsonl"), JSON.stringify(t) + "\n");
    const s = await runAggregate({
      fragments: [frag(data)],
      params: AggregateParams.parse({}),
      outDir: out,
      root: REPO_ROOT,
      log: quiet,
    });
    const csv = readFileSync(join(out, "tables", "table_c_win_at_p_leaderboard.csv"), "utf8");
    assertEquals(csv.split("\n").slice(0, 4), [
      "rank,author,coverage,ranked,p,n_total,n_wins,win_pct,pct_evaluated,correctness_pct",
      "1,alice,5/5 (100.0 %),true,0.95,5,4,80,100,70",
      "2,bob,4/5 (80.0 %),true,0.95,4,3,75,80,50",
      ",carol,1/5 (20.0 %),false,0.95,1,1,100,20,100",
    ]);
    assertEquals((s.leader as Record<string, unknown>).author, "alice");
    const html = readFileSync(join(out, "index.html"), "utf8");
    assertMatch(
      html,
      /<b>alice<\/b> ranks first with 80% \(4\/5 workloads won; coverage 5\/5 \(100\.0 %\)\)/,
    );
    assertMatch(
      html,
      /Not ranked, coverage too low to compare: carol \(coverage 1\/5 \(20\.0 %\), win@0\.95 100%\)/,
    );
    assert(!/carol<\/b>/.test(html), "carol does not lead");
    const vsPaper = readFileSync(join(out, "tables", "table_c_vs_paper.csv"), "utf8");
    assertMatch(vsPaper, /\n,carol,ours,1\/5 \(20\.0 %\),false,100,/);
  } finally {
    rmSync(data, { recursive: true, force: true });
    rmSync(out, { recursive: true, force: true });
  }
});

Deno.test("zero traces: the report says so and every table still exists", async () => {
  const out = mkdtempSync(join(tmpdir(), "agg-"));
  try {
    const s = await runAggregate({
      fragments: [frag(EMPTY)],
      params: AggregateParams.parse({}),
      outDir: out,
      root: REPO_ROOT,
      log: quiet,
    });
    assertEquals(s.counts.traces, 0);
    assertMatch(readFileSync(join(out, "index.html"), "utf8"), /No traces were found/);
    assert(existsSync(join(out, "tables", "table_b_fast_p.csv")));
    assert(existsSync(join(out, "charts", "fig6_fast_p_ours.svg")));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

Deno.test("pGrid hits the decimal literals exactly", () => {
  const g = pGrid(0.1, 1.5);
  assertEquals(g.length, 16);
  assertEquals(g[3], 0.3);
  assertEquals(g[15], 1.5);
});
