/**
 * One aggregate run over a set of fragments: builds a DuckDB database from them, answers the
 * paper's questions with SQL views (sql/*.sql), and writes the tables (CSV + Markdown), the charts
 * (SVG) and a self-contained HTML report, each beside the paper's values.
 */
import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import type { DuckDBConnection } from "@duckdb/node-api";
import {
  type CellResult,
  formatDiagnostic,
  type Toolchain,
  writeFileAtomic,
} from "../../pipeline/engine/mod.ts";
import { analyse, loadPaperFigures } from "./analysis.ts";
import { buildCharts } from "./charts.ts";
import { characterizationSection, loadCharacterizationPoints } from "./characterization.ts";
import { all, closeDb, openDb, sqlString } from "./db.ts";
import { type Fragment, loadDatabase, REJECTED_DIR } from "./load.ts";
import type { AggregateParams } from "./params.ts";
import type { ShippedCell } from "./runs.ts";
import { renderReport, type ReportProvenance, type TraceLink } from "./report.ts";
import { type Table, toCsv, toMarkdown } from "./tables.ts";
import {
  formatSolution,
  mergeFragments,
  readSweepIndex,
  solutionPath,
} from "../../pipeline/trace/mod.ts";
import { type BestOfSweep, selectBestOfSweep } from "./best_of_sweep.ts";

/** Inputs of one aggregate run, independent of the engine. */
export interface AggregateInput {
  fragments: Fragment[];
  params: AggregateParams;
  outDir: string;
  /** Repository root (for data/paper-figures.json and the git commit). */
  root: string;
  toolchain?: Partial<Toolchain>;
  log: (msg: string) => void;
  /**
   * Byte-stable output (a shipped run's report): no timings, no toolchain of the aggregating
   * machine, no DuckDB file; the same inputs give the same bytes on any machine.
   */
  stable?: boolean;
  /**
   * Where the report will be published: trace files are then linked (relative to it) instead of
   * copied beside the report. Shipped runs' traces stay in results/ and are linked there.
   */
  linkFrom?: string;
  /** The commit shown as the report's provenance (a shipped run's run.json), instead of git's. */
  gitCommit?: string;
  /** Which machine judged the traces and which aggregated them (the report's provenance). */
  machines?: string;
  /** The report's heading (which run, which machine). */
  heading?: string;
  /** HTML placed at the top of index.html (the front page: claims, runs), built after withDb. */
  front?: () => Promise<string>;
  /** Runs with the loaded database before the report is written (claims, cell exports). */
  withDb?: (conn: DuckDBConnection) => Promise<void>;
  /** Receives the analysis (its tables and counts) before the report is written. */
  onAnalysis?: (a: { tables: Table[]; counts: Record<string, number> }) => void;
}

/** What a run produced (also the cell's summary). */
export interface AggregateSummary {
  counts: Record<string, number>;
  diagnostics: number;
  tables: string[];
  charts: string[];
  leader: Record<string, unknown> | null;
  seconds: number;
  timings: Record<string, number>;
}

/**
 * Turns upstream cells into fragments (every cell dir; empty ones simply contribute nothing). A
 * cell's rejected/ folder (the solutions generate rejected, with their COMPILE_ERROR traces) is a
 * fragment of its own, right after its cell's.
 */
export function fragmentsOf(upstream: Record<string, ShippedCell[]>): Fragment[] {
  const out: Fragment[] = [];
  // Every upstream stage the registry gives aggregate, in the registry's order.
  for (const [stage, cells] of Object.entries(upstream)) {
    for (const c of cells) {
      out.push({
        stage,
        cellId: c.id,
        cellKey: c.key,
        dir: c.dir,
        summary: c.summary,
        ...(c.packedDir ? { packedDir: c.packedDir } : {}),
      });
      const rejected = join(c.dir, REJECTED_DIR);
      if (existsSync(rejected)) {
        out.push({
          stage,
          cellId: `${c.id}/${REJECTED_DIR}`,
          cellKey: c.key,
          dir: rejected,
          origin: "rejected",
        });
      }
    }
  }
  return out;
}

function gitCommit(root: string, provenance: string[]): string {
  for (const doc of provenance) {
    const m = doc.match(/"(?:git_?[cC]ommit|commit)"\s*:\s*"([0-9a-f]{7,40})"/);
    if (m) return m[1];
  }
  try {
    const out = new Deno.Command("git", {
      args: ["-C", root, "rev-parse", "HEAD"],
      stdout: "piped",
      stderr: "null",
    })
      .outputSync();
    if (out.success) return new TextDecoder().decode(out.stdout).trim();
  } catch { /* git absent */ }
  return "unknown (no git commit)";
}

/** Runs the whole aggregate into `outDir`. */
export async function runAggregate(input: AggregateInput): Promise<AggregateSummary> {
  const { params, outDir, log } = input;
  const tStart = performance.now();
  const timings: Record<string, number> = {};
  let t0 = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    timings[name] = (now - t0) / 1000;
    t0 = now;
    log(`[aggregate] ${name}: ${timings[name].toFixed(2)} s`);
  };
  mkdirSync(join(outDir, "tables"), { recursive: true });
  mkdirSync(join(outDir, "charts"), { recursive: true });
  const dbPath = join(outDir, "tracepipe.duckdb");
  rmSync(dbPath, { force: true });
  // Built in memory and copied to the file at the end: writing 1M rows through a file-backed
  // database while querying it costs about twice as much (docs/BENCHMARKS-aggregate.md).
  const db = await openDb(":memory:");
  try {
    log(`[aggregate] loading ${input.fragments.length} upstream cells`);
    const loaded = await loadDatabase(db.conn, input.fragments, params, log);
    for (const [k, v] of Object.entries(loaded.timings)) timings[`load: ${k}`] = v;
    for (const d of loaded.diagnostics.slice(0, 50)) log(`[aggregate] ${formatDiagnostic(d)}`);
    if (loaded.diagnostics.length > 50) {
      log(
        `[aggregate] ... ${
          loaded.diagnostics.length - 50
        } more diagnostics (tables/diagnostics.csv)`,
      );
    }
    lap(
      `load (${loaded.traces} traces: ${loaded.tracesViaDuckdb} via read_ndjson, ${loaded.tracesViaJs} via the TS parser)`,
    );

    await loadCharacterizationPoints(db.conn, input.fragments);
    const paper = loadPaperFigures(join(input.root, "data", "paper-figures.json"));
    const a = await analyse(db.conn, params, paper);
    lap(`analysis views (${a.tables.length} tables)`);
    if (input.withDb) await input.withDb(db.conn);
    input.onAnalysis?.(a);
    for (const t of a.tables) {
      writeFileSync(join(outDir, "tables", `${t.id}.csv`), toCsv(t));
      writeFileSync(join(outDir, "tables", `${t.id}.md`), toMarkdown(t));
    }
    lap("tables written (CSV + Markdown)");
    const charts = await buildCharts(a.fastP, a.winCurve, a.correctness, paper, params.winP);
    for (const c of charts) writeFileSync(join(outDir, "charts", `${c.id}.svg`), c.svg);
    lap(`charts rendered (${charts.length} SVG)`);
    // Only a run with judged points of the decode characterization grid has this section.
    const char = await characterizationSection(db.conn, params.htmlMaxRows);
    for (const t of char?.tables ?? []) {
      writeFileSync(join(outDir, "tables", `${t.id}.csv`), toCsv(t));
      writeFileSync(join(outDir, "tables", `${t.id}.md`), toMarkdown(t));
    }
    for (const c of char?.charts ?? []) writeFileSync(join(outDir, "charts", `${c.id}.svg`), c.svg);
    if (char) {
      lap(`decode characterization (${char.tables.length} tables, ${char.charts.length} SVG)`);
    }

    const links = await traceLinks(db.conn, input);
    const prov = await provenanceOf(db.conn, input, timings);
    const front = input.front ? await input.front() : "";
    writeFileSync(
      join(outDir, "index.html"),
      renderReport(a, charts, prov, links, params.htmlMaxRows, params.leaderboardMinCoverage, {
        heading: input.heading,
        front,
        sections: char
          ? [{ id: "characterization", title: "Decode characterization", html: char.html }]
          : [],
      }),
    );
    lap("HTML report written");
    const leader = a.tables.find((t) => t.id === "table_c_win_at_p_leaderboard")?.rows[0] ?? null;
    const summary: AggregateSummary = {
      counts: a.counts,
      diagnostics: loaded.diagnostics.length,
      tables: [...a.tables, ...char?.tables ?? []].map((t) => t.id),
      charts: [...charts, ...char?.charts ?? []].map((c) => c.id),
      leader,
      seconds: (performance.now() - tStart) / 1000,
      timings,
    };
    if (!input.stable) {
      await db.conn.run(
        `ATTACH ${sqlString(dbPath)} AS disk; COPY FROM DATABASE memory TO disk; DETACH disk;`,
      );
      lap("DuckDB file written");
    }
    summary.seconds = (performance.now() - tStart) / 1000;
    // A byte-stable report records no times (they differ run to run).
    const { seconds: _s, timings: _t, ...stableSummary } = summary;
    writeFileSync(
      join(outDir, "summary.json"),
      JSON.stringify(input.stable ? stableSummary : summary, null, 2) + "\n",
    );
    log(`[aggregate] done in ${summary.seconds.toFixed(2)} s`);
    return summary;
  } finally {
    closeDb(db);
  }
}

/**
 * The report's links to the trace files: copied beside the report when small enough (so the links
 * survive publishing), or, with `linkFrom`, linked relative to where the report is published.
 */
async function traceLinks(conn: DuckDBConnection, input: AggregateInput): Promise<TraceLink[]> {
  const { params, outDir, log } = input;
  const files = await all(conn, "SELECT file, path, bytes FROM trace_files ORDER BY file");
  const total = files.reduce((s, f) => s + Number(f.bytes), 0);
  const copy = !input.linkFrom && total <= params.copyTracesMaxBytes;
  const links: TraceLink[] = files.map((f) => {
    const rel = join("traces", String(f.file));
    if (copy) {
      mkdirSync(dirname(join(outDir, rel)), { recursive: true });
      cpSync(String(f.path), join(outDir, rel));
    }
    return {
      file: String(f.file),
      href: copy
        ? rel
        : input.linkFrom
        ? relative(input.linkFrom, String(f.path))
        : `file://${f.path}`,
      bytes: Number(f.bytes),
    };
  });
  if (!copy && !input.linkFrom) {
    log(
      `[aggregate] ${total} bytes of traces exceed copyTracesMaxBytes: the report links to the store`,
    );
  }
  return links;
}

/** The report's provenance: commit, evaluation environments, upstream cells, params, timings. */
async function provenanceOf(
  conn: DuckDBConnection,
  input: AggregateInput,
  timings: Record<string, number>,
): Promise<ReportProvenance> {
  const prov = await all(
    conn,
    "SELECT stage, cell_id, cell_key, doc FROM provenance ORDER BY stage, cell_id",
  );
  const envs = (await all(
    conn,
    "SELECT DISTINCT environment FROM trace_files WHERE environment IS NOT NULL AND origin = 'judged' ORDER BY 1",
  ))
    .map((r) => String(r.environment));
  const tc = input.toolchain ?? {};
  return {
    gitCommit: input.gitCommit ?? gitCommit(input.root, prov.map((r) => String(r.doc))),
    machines: input.machines ?? "",
    toolchain: input.stable ? {} : {
      deno: tc.deno,
      os: tc.os,
      arch: tc.arch,
      python: tc.python,
      nvcc: tc.nvcc,
      gpus: tc.gpus,
    },
    upstream: input.fragments.map((f) => ({
      stage: f.stage,
      cell_id: f.cellId,
      cell_key: f.cellKey,
    })),
    environments: envs,
    params: input.params,
    timings: input.stable ? {} : timings,
  };
}

/**
 * Records the "best of sweep" selection: per (kernel, definition), the sweep point with the lowest
 * median latency among those that PASSED every workload any point ran on. Writes the selection as
 * a table and the chosen points as `<kernel>__<definition>__best` solutions (a TraceSet fragment).
 */
export function writeBestOfSweep(
  upstream: Record<string, CellResult[]>,
  outDir: string,
): BestOfSweep[] {
  const index = (upstream.generate ?? []).flatMap((c) => readSweepIndex(c.dir));
  if (!index.length) return [];
  const merged = mergeFragments(
    ["definitions", "generate", "verify", "time"].flatMap((st) => upstream[st] ?? []),
  );
  const best = selectBestOfSweep(merged.traces, index, merged.solutions);
  const rows = best.map((b) => ({
    kernel: b.kernel,
    definition: b.definition,
    chosen: b.chosen,
    point: Object.entries(b.point).map(([k, v]) => `${k}=${v}`).join(" "),
    median_latency_ms: b.medianLatencyMs,
    workloads: b.workloads,
    points_eligible: `${b.candidates.filter((c) => c.eligible).length}/${b.candidates.length}`,
  }));
  const table = {
    id: "best_of_sweep",
    title: "Best of sweep",
    caption:
      "Per (kernel, definition): the sweep point with the lowest median latency among the points that PASSED every workload any point was timed on.",
    columns: [
      "kernel",
      "definition",
      "chosen",
      "point",
      "median_latency_ms",
      "workloads",
      "points_eligible",
    ],
    rows,
  };
  mkdirSync(join(outDir, "tables"), { recursive: true });
  writeFileSync(join(outDir, "tables", "best_of_sweep.md"), toMarkdown(table));
  writeFileSync(join(outDir, "tables", "best_of_sweep.csv"), toCsv(table));
  writeFileSync(
    join(outDir, "tables", "best_of_sweep.json"),
    JSON.stringify(best.map(({ solution: _s, ...b }) => b), null, 2) + "\n",
  );
  for (const b of best) {
    const def = merged.definitions.get(b.definition);
    if (def) {
      writeFileAtomic(
        join(outDir, "best-of-sweep", solutionPath(b.solution, def.op_type)),
        formatSolution(b.solution),
      );
    }
  }
  return best;
}
