/**
 * Stage `aggregate`: the report. Every upstream TraceSet fragment of this machine's run, and every
 * shipped run of results/, each into DuckDB and through the paper's questions (sql/*.sql): tables,
 * charts and an HTML report per run, beside the paper's values, under a first screen with the
 * claims (claims.json). An ordinary run publishes into reports/latest/ (git-ignored); the committed
 * report in reports/ is rebuilt from the shipped runs alone by `tp report --ship`.
 */
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative } from "node:path";
import {
  defineStage,
  digestJson,
  PipelineError,
  type PlanContext,
} from "../../pipeline/engine/mod.ts";
import { AggregateParams } from "./params.ts";
import {
  listShippedRuns,
  RUN_STAGES,
  runDigests,
  RunFolderError,
  type ShippedRun,
} from "./runs.ts";
import { buildMultiRunReport, liveRuns, THIS_MACHINE } from "./report_runs.ts";
import { ClaimsError } from "./claims.ts";
import { publishTarget } from "./marker.ts";

// The aggregate's whole computation, one run at a time (kept importable from here).
export {
  type AggregateInput,
  type AggregateSummary,
  fragmentsOf,
  runAggregate,
  writeBestOfSweep,
} from "./aggregate.ts";

export { PUBLISH_DIR, publishTarget, SHIPPED_MARKER } from "./marker.ts";

/** The shipped runs the params name (none when `shippedRuns` is empty). */
export function shippedRunsOf(root: string, params: AggregateParams): ShippedRun[] {
  if (!params.shippedRuns) return [];
  try {
    return listShippedRuns(join(root, params.shippedRuns), RUN_STAGES, params.shippedRuns);
  } catch (e) {
    if (e instanceof RunFolderError) throw new PipelineError(e.message);
    throw e;
  }
}

/** The aggregate stage (one cell, `report`). */
export const aggregateStage = defineStage<AggregateParams>({
  name: "aggregate",
  description:
    "DuckDB analysis of all traces: the paper's Tables A-C, charts and an HTML report beside the paper",
  // Keyed on every trace it reads, so it re-runs exactly when they change. Its tables are
  // deterministic; the DuckDB file's bytes and the report's timings are not (`--force aggregate`).
  policy: "pure",
  params: AggregateParams,
  env: [],
  resource: "cpu",
  module: import.meta.url,
  publish: ({ cells, root, log }) => {
    if (!cells.length) return;
    // Never over the committed report of the shipped runs.
    const target = publishTarget(root);
    publishReports(cells[0].dir, target);
    log(`report written to ${join(target, "index.html")}`);
  },
  codeFiles: [
    "stages/aggregate/sql/00_schema.sql",
    "stages/aggregate/sql/10_evaluations.sql",
    "stages/aggregate/sql/20_best_run_per_author_workload.sql",
    "stages/aggregate/sql/30_baseline_per_workload.sql",
    "stages/aggregate/sql/40_correctness_rate_by_language_author.sql",
    "stages/aggregate/sql/50_fast_p_by_op_language_author.sql",
    "stages/aggregate/sql/60_win_at_p_leaderboard.sql",
    "stages/aggregate/sql/70_status_and_compile_error_taxonomy.sql",
    "stages/aggregate/sql/80_roofline_per_cell.sql",
    "stages/aggregate/sql/90_definition_summary.sql",
    "stages/aggregate/sql/95_characterization.sql",
    "data/paper-figures.json",
    "claims.json",
  ],
  toolchainFacts: () => ({}),
  plan(ctx: PlanContext<AggregateParams>) {
    const inputs: Record<string, string> = {};
    // A cell's digest covers its rejected/ folder too (it is part of the cell's output).
    for (const [stage, cells] of Object.entries(ctx.upstream)) {
      for (const c of cells) inputs[`${stage}/${c.id}`] = c.digest;
    }
    const paper = join(ctx.root, "data", "paper-figures.json");
    if (existsSync(paper)) {
      inputs["data/paper-figures.json"] = digestJson(readFileSync(paper, "utf8"));
    }
    // The shipped runs are inputs like any upstream cell: a new or changed run re-keys the report.
    shippedRunsOf(ctx.root, ctx.params);
    if (ctx.params.shippedRuns) {
      Object.assign(inputs, runDigests(join(ctx.root, ctx.params.shippedRuns)));
    }
    return Promise.resolve([{ id: "report", params: ctx.params, inputs }]);
  },
  async run(job, ctx) {
    const shipped = shippedRunsOf(ctx.root, ctx.params);
    const { runs, claimsOn, note } = liveRuns(shipped, ctx.upstream, ctx.toolchain);
    let built;
    try {
      built = await buildMultiRunReport({
        runs,
        top: THIS_MACHINE,
        claimsOn,
        claimsNote: note,
        params: ctx.params,
        outDir: job.outDir,
        publishedAt: publishTarget(ctx.root),
        root: ctx.root,
        claimsPath: join(ctx.root, "claims.json"),
        toolchain: ctx.toolchain,
        log: job.log,
      });
    } catch (e) {
      if (e instanceof ClaimsError) throw new PipelineError(e.message);
      throw e;
    }
    const here = built.summaries[THIS_MACHINE];
    const count = (s: string) => built.claims.filter((c) => c.status === s).length;
    job.setSummary({
      counts: here.counts,
      diagnostics: here.diagnostics,
      leader: here.leader,
      shippedRuns: shipped.map((r) => r.id),
      claims: { on: claimsOn, pass: count("PASS"), fail: count("FAIL"), notRun: count("NOT RUN") },
    });
  },
});

const MANIFEST = ".aggregate-published.json";

/** Removes `dir` and its parents up to (not including) `top` while they are empty. */
function pruneEmptyParents(top: string, dir: string): void {
  while (dir.startsWith(top + "/") && existsSync(dir) && readdirSync(dir).length === 0) {
    rmSync(dir, { recursive: true });
    dir = dirname(dir);
  }
}

/**
 * Copies the aggregate cell's output into `reportsDir` (the repo's reports/). Files published the
 * previous time (listed in a manifest) are removed first, so nothing stale survives and files
 * others put in reports/ are left alone.
 */
export function publishReports(cellDir: string, reportsDir: string): string[] {
  mkdirSync(reportsDir, { recursive: true });
  const manifest = join(reportsDir, MANIFEST);
  if (existsSync(manifest)) {
    for (const rel of JSON.parse(readFileSync(manifest, "utf8")) as string[]) {
      rmSync(join(reportsDir, rel), { force: true, recursive: true });
      pruneEmptyParents(reportsDir, dirname(join(reportsDir, rel)));
    }
  }
  const copied: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(dir)) {
      const p = join(dir, e.name);
      if (e.isDirectory) walk(p);
      else if (e.isFile) {
        const rel = relative(cellDir, p);
        mkdirSync(dirname(join(reportsDir, rel)), { recursive: true });
        cpSync(p, join(reportsDir, rel));
        copied.push(rel);
      }
    }
  };
  walk(cellDir);
  copied.sort();
  writeFileSync(manifest, JSON.stringify(copied, null, 1) + "\n");
  return copied;
}
