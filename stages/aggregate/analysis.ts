/**
 * Reads the analysis views into tables, and sets the paper's values (data/paper-figures.json)
 * beside ours with the differences that explain a gap.
 */
import { readFileSync } from "node:fs";
import type { DuckDBConnection } from "@duckdb/node-api";
import { all, columnsOf, type Row } from "./db.ts";
import type { AggregateParams } from "./params.ts";
import { pivot, type Table } from "./tables.ts";

/** The parts of data/paper-figures.json this stage reads. */
export interface PaperFigures {
  hardware: string;
  models: Record<string, { full_id: string; labels: Record<string, string> }>;
  table_a_correctness_by_language: { values: Record<string, Record<string, number>> };
  table_b_fast_p: {
    values: Record<string, Record<string, Record<string, Record<string, number>>>>;
  };
  table_c_leaderboard: {
    n_workloads: number;
    p: number;
    rows: Array<{
      rank: number;
      author: string;
      model: string;
      "fast_0.95": number;
      pct_evaluated: number;
      overall_correctness: number | null;
    }>;
  };
}

/** Loads the paper's figure values. */
export function loadPaperFigures(path: string): PaperFigures {
  return JSON.parse(readFileSync(path, "utf8"));
}

/** Everything the report needs besides the charts. */
export interface Analysis {
  tables: Table[];
  baselineCaption: string;
  counts: Record<string, number>;
  hardware: string[];
  /** Chart inputs. */
  fastP: Row[];
  winCurve: Row[];
  correctness: Row[];
  authorToModel: Map<string, string>;
}

const PAPER_PANEL_NAMES: Record<string, string> = {
  gemm: "GEMM",
  gqa_paged_decode: "GQA paged decode",
  rmsnorm: "RMSNorm",
};

/** Maps our authors to the paper's model keys: by alias, or by an exact (case-insensitive) name. */
export function mapAuthors(
  authors: string[],
  paper: PaperFigures,
  aliases: Record<string, string>,
): Map<string, string> {
  const m = new Map<string, string>();
  for (const a of authors) {
    if (aliases[a] && paper.models[aliases[a]]) {
      m.set(a, aliases[a]);
      continue;
    }
    for (const [key, model] of Object.entries(paper.models)) {
      const names = [key, model.full_id, ...Object.values(model.labels)].map((s) =>
        s.toLowerCase()
      );
      if (names.includes(a.toLowerCase())) m.set(a, key);
    }
  }
  return m;
}

async function q(conn: DuckDBConnection, sql: string): Promise<{ columns: string[]; rows: Row[] }> {
  return { columns: await columnsOf(conn, sql), rows: await all(conn, sql) };
}

/** What every table builder shares: the connection, the settings and the paper's values. */
interface TableContext {
  conn: DuckDBConnection;
  params: AggregateParams;
  paper: PaperFigures;
  counts: Record<string, number>;
  /** Our author -> the paper's model key. */
  a2m: Map<string, string>;
  /** Appends the baseline caption, which every table but the diagnostics carries. */
  cap: (s: string) => string;
  /** The differences to the paper's setup, noted under each "beside the paper" table. */
  gaps: string[];
}

/** What a table's caption on the report's page says of the baselines, stated in full once under the summary. */
export const BASELINES_SEE_SUMMARY =
  "Speedups are against the baselines stated under the summary (Baselines).";

/** The p columns of Table B's grid on the report's page (the paper's Fig. 6 axis runs 0 to 1.5, 4.0). */
const TABLE_B_GRID_P = [0, 0.5, 0.8, 1, 1.2, 1.5];

/** Table B's long rows (one per p) as the paper's grid: one row per panel × language × author. */
export function fastPGrid(rows: Row[]): { columns: string[]; rows: Row[]; note: string } {
  const picked = rows.filter((r) => TABLE_B_GRID_P.includes(Number(r.p))).map((r) => ({
    panel: r.panel,
    language: r.language,
    author: r.author,
    n: r.n_workloads,
    p: `fast_${Number(r.p).toFixed(1)}`,
    fast_p: r.fast_p,
  }));
  const wide = pivot(picked, ["panel", "language", "author", "n"], "p", "fast_p");
  const keys = new Set(["panel", "language", "author", "n"]);
  for (const r of wide.rows) {
    for (const c of wide.columns.filter((c) => !keys.has(c))) {
      // No workload with a baseline: fast_p is undefined, not 0 (pivot fills the gaps with 0).
      r[c] = Number(r.n) > 0 ? Math.round(Number(r[c]) * 1000) / 1000 : null;
    }
  }
  return {
    ...wide,
    note: `fast_p at p = ${TABLE_B_GRID_P.join(", ")}; n = workloads with a baseline latency. ` +
      "Every p of the grid (0.1 steps) is in the CSV and Markdown files, one row per p.",
  };
}

/** Runs every view and builds the tables. */
export async function analyse(
  conn: DuckDBConnection,
  params: AggregateParams,
  paper: PaperFigures,
): Promise<Analysis> {
  const counts = await countRows(conn);
  const hardware = await hardwareOf(conn);
  const baselineCaption = await describeBaselines(conn);
  const authors = (await all(conn, "SELECT DISTINCT author FROM solutions ORDER BY 1")).map((r) =>
    String(r.author)
  );
  const a2m = mapAuthors(authors, paper, params.authorAliases);
  const ctx: TableContext = {
    conn,
    params,
    paper,
    counts,
    a2m,
    // In full in the table files (each stands alone); the report's page states them once (report.ts).
    cap: (s: string) => `${s} ${baselineCaption}`,
    gaps: gapNotes(counts, hardware, authors, a2m, baselineCaption),
  };
  // The order of the tables is the order of the report.
  const a = await correctnessTables(ctx);
  const b = await fastPTables(ctx);
  const c = await leaderboardTables(ctx);
  const winCurve = await winCurveTable(ctx);
  const tables = [...a.tables, ...b.tables, ...c, winCurve, ...await detailTables(ctx)];
  return {
    tables,
    baselineCaption,
    counts,
    hardware,
    fastP: b.rows,
    winCurve: winCurve.rows,
    correctness: a.rows.filter((r) => !r.is_baseline_author),
    authorToModel: a2m,
  };
}

/** Row counts of the raw tables and views, for the report's summary and the captions. */
async function countRows(conn: DuckDBConnection): Promise<Record<string, number>> {
  const num = async (sql: string) => Number((await all(conn, sql))[0]?.n ?? 0);
  return {
    definitions: await num("SELECT count(*) AS n FROM definitions"),
    definitions_with_workloads: await num(
      "SELECT count(DISTINCT definition) AS n FROM all_workloads",
    ),
    workloads: await num("SELECT count(*) AS n FROM all_workloads"),
    solutions: await num("SELECT count(*) AS n FROM solutions"),
    // Trace lines the judging stages wrote; a rejected solution's runs are counted apart.
    traces: await num(
      "SELECT count(*) AS n FROM traces WHERE file IN (SELECT file FROM trace_files WHERE origin = 'judged')",
    ),
    rejected_solutions: await num(
      "SELECT count(DISTINCT solution) AS n FROM traces WHERE file IN (SELECT file FROM trace_files WHERE origin = 'rejected')",
    ),
    trace_files: await num("SELECT count(*) AS n FROM trace_files"),
    cells: await num("SELECT count(*) AS n FROM cells"),
    authors: await num(
      "SELECT count(DISTINCT author) AS n FROM run_summary WHERE NOT is_baseline_author",
    ),
    diagnostics: await num("SELECT count(*) AS n FROM diagnostics"),
    win_groups: await num("SELECT count(*) AS n FROM win_groups"),
  };
}

/** The GPUs the traces were measured on. */
async function hardwareOf(conn: DuckDBConnection): Promise<string[]> {
  return (await all(
    conn,
    // Generate's traces of rejected solutions ran on no GPU.
    `SELECT DISTINCT hardware FROM traces WHERE hardware IS NOT NULL
     AND file IN (SELECT file FROM trace_files WHERE origin = 'judged') ORDER BY 1`,
  )).map((r) => String(r.hardware));
}

/** The baseline caption: which baseline each op type used, and whether it was a fallback. */
async function describeBaselines(conn: DuckDBConnection): Promise<string> {
  const bl = await all(conn, "SELECT * FROM baseline_by_op_type");
  // Only definitions that were evaluated: a corpus brings solutions for many definitions no run
  // selected, and "no baseline" for those would contradict the op type's real baseline.
  const noBase = await all(
    conn,
    `SELECT op_type, count(DISTINCT definition) AS n_definitions FROM run_summary
     WHERE definition NOT IN (SELECT definition FROM baseline_choice) GROUP BY 1 ORDER BY 1`,
  );
  const parts = bl.map((r) =>
    `${r.op_type} → ${r.label}${
      r.is_fallback ? " (fallback: the preferred baseline is not installed)" : ""
    }${
      r.timed_by === "own runs"
        ? ""
        : " (timed beside each candidate by the time stage: its own runs were not selected)"
    } [${r.n_definitions} def.]`
  );
  for (const r of noBase) {
    parts.push(
      `${r.op_type} → none (no baseline solution; speedups undefined) [${r.n_definitions} def.]`,
    );
  }
  return parts.length
    ? `Baseline: ${
      parts.join("; ")
    }. Paper: FlashInfer for every op type, torch.matmul (cuBLAS) for GEMM.`
    : "Baseline: none found (no solutions). Paper: FlashInfer for every op type, torch.matmul (cuBLAS) for GEMM.";
}

/** Table A (correctness by language × author) and Table A beside the paper; rows feed Fig. 7. */
async function correctnessTables(ctx: TableContext): Promise<{ tables: Table[]; rows: Row[] }> {
  const ta = await q(ctx.conn, "SELECT * FROM correctness_rate_by_language_author");
  const ours: Table = {
    id: "table_a_correctness_by_language_author",
    title: "Table A: correctness rate by language × author (Fig. 7)",
    caption: ctx.cap(
      "Share of evaluated (solution, workload) cells that PASSED; a cell passes only if every run of it passed. " +
        "Baseline authors are listed for reference.",
    ),
    ...ta,
  };
  const besidePaper: Table = {
    id: "table_a_vs_paper",
    title: "Table A beside the paper",
    caption: ctx.cap("Correctness % per language, the paper's Fig. 7 bar labels next to ours."),
    columns: ["who", "source", "cuda_pct", "triton_pct"],
    rows: correctnessBesidePaper(ta.rows, ctx.paper, ctx.a2m),
    notes: [
      ...ctx.gaps,
      "Denominator: ours counts (solution, workload) cells; the paper does not state its denominator (paper.md §5).",
    ],
  };
  return { tables: [ours, besidePaper], rows: ta.rows };
}

/** Each paper model's Fig. 7 values followed by our authors mapped to it; then our unmapped authors. */
function correctnessBesidePaper(rows: Row[], paper: PaperFigures, a2m: Map<string, string>): Row[] {
  const ourA = new Map<string, Record<string, number>>();
  for (const r of rows) {
    const m = ourA.get(r.author as string) ?? {};
    m[r.language as string] = r.correctness_pct as number;
    ourA.set(r.author as string, m);
  }
  const ourRow = (a: string, v: Record<string, number>): Row => ({
    who: a,
    source: "ours",
    cuda_pct: v.cuda ?? null,
    triton_pct: v.triton ?? null,
  });
  const aRows: Row[] = [];
  for (const [model, v] of Object.entries(paper.table_a_correctness_by_language.values)) {
    aRows.push({
      who: model,
      source: "paper (Fig. 7, B200)",
      cuda_pct: v.cuda ?? null,
      triton_pct: v.triton ?? null,
    });
    for (const [a, m] of a2m) {
      if (m === model && ourA.has(a)) aRows.push(ourRow(a, ourA.get(a)!));
    }
  }
  for (const [a, v] of ourA) {
    if (!a2m.has(a)) aRows.push(ourRow(a, v));
  }
  return aRows;
}

/** Table B (fast_p per panel × language × author) and Table B beside the paper; rows feed Fig. 6. */
async function fastPTables(ctx: TableContext): Promise<{ tables: Table[]; rows: Row[] }> {
  const tb = await q(ctx.conn, "SELECT * FROM fast_p_by_op_language_author");
  const ours: Table = {
    id: "table_b_fast_p",
    title: "Table B: fast_p per panel × language × author (Fig. 6)",
    caption: ctx.cap(
      `fast_p = (1/N)·#{workloads correct and baseline/best latency ${ctx.params.fastPOperator} p}; N = every workload of ` +
        "the definitions the (author, language) wrote solutions for, minus those without a baseline latency " +
        "(n_without_baseline); a workload never run counts as not fast.",
    ),
    ...tb,
    shown: fastPGrid(tb.rows),
  };
  const { rows, ps } = fastPBesidePaper(tb.rows, ctx.paper, ctx.a2m);
  const besidePaper: Table = {
    id: "table_b_vs_paper",
    title: "Table B beside the paper (GEMM, GQA paged decode, RMSNorm panels)",
    caption: ctx.cap(
      `fast_p at the paper's p values; ours for every author with solutions in the panel (${
        Object.values(PAPER_PANEL_NAMES).join(", ")
      }); n = our workloads per curve (the paper's GQA decode panel pools 96).`,
    ),
    columns: ["panel", "language", "who", "source", "n", ...ps],
    rows,
    notes: ctx.gaps,
  };
  return { tables: [ours, besidePaper], rows: tb.rows };
}

/**
 * Per paper panel and language: each paper model's Fig. 6 curve followed by our authors mapped to
 * it, then our unmapped authors of that panel and language; ps = every p the paper gives, sorted.
 */
function fastPBesidePaper(
  rows: Row[],
  paper: PaperFigures,
  a2m: Map<string, string>,
): { rows: Row[]; ps: string[] } {
  const bRows: Row[] = [];
  const pCols = new Set<string>();
  for (const [panel, langs] of Object.entries(paper.table_b_fast_p.values)) {
    for (const [lang, models] of Object.entries(langs)) {
      for (const [model, curve] of Object.entries(models)) {
        Object.keys(curve).forEach((k) => pCols.add(k));
        bRows.push({
          panel,
          language: lang,
          who: model,
          source: "paper (Fig. 6, B200)",
          n: null,
          ...curve,
        });
        for (const [a, m] of a2m) {
          if (m === model) bRows.push(ourCurve(rows, panel, lang, a, Object.keys(curve)));
        }
      }
      const ours = new Set(
        rows.filter((r) => r.panel === panel && r.language === lang).map((r) => String(r.author)),
      );
      // An unmapped author is shown at the p values of the panel's first paper curve.
      const ps = Object.keys(Object.values(models)[0] ?? {});
      for (const a of [...ours].sort()) {
        if (!a2m.has(a)) bRows.push(ourCurve(rows, panel, lang, a, ps));
      }
    }
  }
  return { rows: bRows, ps: [...pCols].sort((a, b) => Number(a) - Number(b)) };
}

/** Table C (the win@p leaderboard) and Table C beside the paper. */
async function leaderboardTables(ctx: TableContext): Promise<Table[]> {
  const { params, counts, paper } = ctx;
  const tc = await q(ctx.conn, "SELECT * FROM win_at_p_leaderboard");
  const ours: Table = {
    id: "table_c_win_at_p_leaderboard",
    title: `Table C: win@${params.winP} leaderboard (Fig. 5)`,
    caption: ctx.cap(
      `flashinfer-bench semantics (win_at_p.py): per (definition, workload) group, each author's minimum-latency ` +
        `PASSED run; r = reference/author latency; win = #(r > ${params.winP}) / groups attempted (failed runs lose); ` +
        `"% evaluated" = coverage = groups attempted / ${counts.win_groups} groups (the workloads of the ` +
        `definitions judged); groups without a baseline use ${
          params.winBaselineFallback === "fastest" ? "the fastest author" : "no reference (no wins)"
        }. Ranked: only authors whose coverage is at least ${
          Math.round(params.leaderboardMinCoverage * 100)
        } % of the best-covered author's, by win@p; the others follow without a rank (ranked = false).`,
    ),
    ...tc,
  };
  const cRows: Row[] = paper.table_c_leaderboard.rows.map((r) => ({
    rank: r.rank,
    who: r.author,
    source: "paper (Fig. 5, B200)",
    coverage: `${r.pct_evaluated} % of ${paper.table_c_leaderboard.n_workloads}`,
    ranked: true,
    win_pct: r["fast_0.95"],
    pct_evaluated: r.pct_evaluated,
    correctness_pct: r.overall_correctness,
    n_workloads: paper.table_c_leaderboard.n_workloads,
  }));
  for (const r of tc.rows) {
    cRows.push({
      rank: r.rank,
      who: ctx.a2m.has(r.author as string)
        ? `${r.author} (= ${ctx.a2m.get(r.author as string)})`
        : r.author,
      source: "ours",
      coverage: r.coverage,
      ranked: r.ranked,
      win_pct: r.win_pct,
      pct_evaluated: r.pct_evaluated,
      correctness_pct: r.correctness_pct,
      n_workloads: counts.win_groups,
    });
  }
  const besidePaper: Table = {
    id: "table_c_vs_paper",
    title: "Table C beside the paper",
    caption: ctx.cap(
      `win@${params.winP}: the paper's leaderboard screenshot (n = 660 workloads) next to ours; ours are ranked ` +
        "only among authors of comparable coverage (Table C).",
    ),
    columns: [
      "rank",
      "who",
      "source",
      "coverage",
      "ranked",
      "win_pct",
      "pct_evaluated",
      "correctness_pct",
      "n_workloads",
    ],
    rows: cRows,
    notes: [
      ...ctx.gaps,
      "The paper's correctness column comes from secondary summaries (data/paper-figures.json); ours is passed cells / cells.",
    ],
  };
  return [ours, besidePaper];
}

/** The win@p curves (Fig. 5); its rows also feed the chart. */
async function winCurveTable(ctx: TableContext): Promise<Table> {
  return {
    id: "win_at_p_curve",
    title: "win@p curves (Fig. 5)",
    caption: ctx.cap(
      `win@p on a ${ctx.params.winGridStep} grid, strict '>' (exact at each grid point).`,
    ),
    ...(await q(ctx.conn, "SELECT * FROM win_at_p_curve")),
  };
}

/** The tables with no paper counterpart: taxonomies, roofline, per-definition detail, inputs. */
async function detailTables(ctx: TableContext): Promise<Table[]> {
  const { conn, params, cap } = ctx;
  const st = await all(conn, "SELECT * FROM status_taxonomy");
  return [
    {
      id: "status_taxonomy",
      title: "Status taxonomy (runs per status, author × language)",
      caption: cap("Every evaluation run counted once by its status."),
      ...pivot(st, ["author", "language"], "status", "n_runs"),
    },
    {
      id: "compile_error_taxonomy",
      title: "Compile-error taxonomy",
      caption: cap("COMPILE_ERROR runs sorted by the first matching log pattern (sql/70_*.sql)."),
      ...(await q(conn, "SELECT * FROM compile_error_taxonomy")),
    },
    {
      id: "roofline_by_author_language_op",
      title: "Percentage of roofline, summary",
      caption: cap(
        `Roofline = max(FLOPs / ${params.tflops} TFLOP/s, bytes / ${params.bandwidthTBs} TB/s) (H100 ceilings measured in ` +
          "shared/research/h100-baselines.md); % = roofline time / measured latency; passed cells only.",
      ),
      ...(await q(conn, "SELECT * FROM roofline_by_author_language_op")),
    },
    {
      id: "roofline_per_cell",
      title: "Percentage of roofline per cell",
      caption: cap(
        "One row per passed (solution, workload) cell; model says how FLOPs were counted.",
      ),
      ...(await q(conn, "SELECT * FROM roofline_per_cell")),
    },
    {
      id: "definition_summary",
      title: "Per-definition summary",
      caption: cap(
        "Workloads, solutions, runs and correctness per definition; top author = most workloads with r > 1.",
      ),
      ...(await q(conn, "SELECT * FROM definition_summary")),
    },
    {
      id: "best_run_per_author_workload",
      title: "Best run per author per workload",
      caption: cap(
        "Minimum-latency PASSED run per author per (definition, workload); latency empty = attempted, none passed.",
      ),
      ...(await q(
        conn,
        "SELECT * FROM best_run_per_author_workload ORDER BY definition, uuid, author",
      )),
    },
    {
      id: "baseline_choice",
      title: "Baseline per definition",
      caption: cap("The first configured baseline rule matching a solution of the definition."),
      ...(await q(conn, "SELECT * FROM baseline_choice ORDER BY definition")),
    },
    {
      id: "diagnostics",
      title: "Input diagnostics",
      // No baseline caption: the diagnostics are about the inputs, not the measurements.
      caption:
        "Every line or file that could not be used, with the file, line, JSON path and reason.",
      ...(await q(conn, "SELECT * FROM diagnostics ORDER BY file, line")),
    },
  ];
}

function ourCurve(rows: Row[], panel: string, lang: string, author: string, ps: string[]): Row {
  const mine = rows.filter((r) => r.panel === panel && r.language === lang && r.author === author);
  const out: Row = {
    panel,
    language: lang,
    who: author,
    source: "ours",
    n: mine[0]?.n_workloads ?? 0,
  };
  for (const p of ps) {
    const hit = mine.find((r) => Math.abs(Number(r.p) - Number(p)) < 1e-9);
    out[p] = hit?.fast_p === null || hit?.fast_p === undefined
      ? null
      : Number(Number(hit.fast_p).toFixed(3));
  }
  return out;
}

/** The differences between our run and the paper's that explain a gap, stated from the data. */
function gapNotes(
  counts: Record<string, number>,
  hardware: string[],
  authors: string[],
  a2m: Map<string, string>,
  baselineCaption: string,
): string[] {
  const agents = authors.filter((a) => a !== "baseline");
  return [
    `GPU: ours ${
      hardware.length ? hardware.join(", ") : "none recorded (no traces)"
    }; paper NVIDIA B200 (inferred).`,
    `Agents: ours ${agents.length ? agents.join(", ") : "none"}${
      a2m.size
        ? ` (mapped to the paper's models: ${[...a2m].map(([a, m]) => `${a}=${m}`).join(", ")})`
        : ""
    }; paper gpt-5, o3, gemini-2.5-pro, claude-opus-4.1 with 10 feedback rounds each.`,
    `Baseline: ${baselineCaption.replace(/^Baseline: /, "ours ")}`,
    `Workload set: ours ${counts.workloads} workloads of ${counts.definitions_with_workloads} definitions, ` +
    `${counts.win_groups} with traces; paper ~1,600 workloads, 660 on the leaderboard (Fig. 5).`,
  ];
}
