/**
 * The report over several runs: the shipped runs of results/ and, in an ordinary `reproduce`, what
 * this machine judged. Each run gets its own report (tables, charts, provenance; `runs/<id>/`), one
 * of them sits at the top with the first screen (claims, the runs), and `all-runs/` holds every
 * table with each row labelled by its run and hardware. Shipped runs are reported byte-stably and
 * their traces are linked where they lie, never copied or rewritten.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { SHIPPED_MARKER_TITLE } from "./marker.ts";
import { join, relative } from "node:path";
import type { CellResult, Toolchain } from "../../pipeline/engine/mod.ts";
import {
  type ClaimResult,
  claimsTable,
  decideClaims,
  flattenFacts,
  loadClaims,
  type RunClaimInputs,
  runClaimInputs,
  type RunFacts,
} from "./claims.ts";
import { all, closeDb, openDb, type Row } from "./db.ts";
import { loadDatabase } from "./load.ts";
import { renderApplySection } from "./report_apply.ts";
import { allRunsTable, renderFront, type RunLine, runsTable } from "./front.ts";
import type { AggregateParams } from "./params.ts";
import {
  listShippedRuns,
  newestGpuRun,
  RUN_STAGES,
  RunFolderError,
  type ShippedRun,
} from "./runs.ts";
import { type AggregateSummary, fragmentsOf, runAggregate, writeBestOfSweep } from "./aggregate.ts";
import { type Table, toCsv, toMarkdown } from "./tables.ts";

/** Id of the run this machine judged in an ordinary reproduce. */
export const THIS_MACHINE = "this-machine";

/** One run to report. */
export interface ReportRun {
  id: string;
  kind: "shipped" | "this machine";
  title: string;
  gpu: string | null;
  date: string | null;
  commit: string | null;
  cells: Record<string, CellResult[]>;
  facts: RunFacts;
  /** run.json's measurements (shipped runs): the apply() section reads `measurements.apply`. */
  measurements?: Record<string, unknown>;
  /** Shipped runs: byte-stable, traces linked in results/. */
  stable: boolean;
  /** Which machine judged the run and which aggregated it, for the report's provenance. */
  machines: string;
}

/** The provenance line of a shipped run: the machine that judged it, apart from the one aggregating. */
export function shippedMachines(r: ShippedRun): string {
  const m = r.meta.machine as Record<string, unknown>;
  const facts = [m.kind, m.driver ? `driver ${m.driver}` : null, m.judged_utc]
    .filter((x) => typeof x === "string" && x !== "");
  return `Judged on ${r.meta.gpu ?? "no GPU"}${
    facts.length ? ` (${facts.join("; ")})` : ""
  } at commit ` +
    `${
      r.meta.commit.judged.slice(0, 12)
    }. Aggregated from results/${r.id}/ by \`tp report --ship\`, ` +
    "which gives these bytes on any machine: the aggregating machine is deliberately not recorded" +
    (r.meta.commit.aggregated
      ? `; the report code of commit ${r.meta.commit.aggregated.slice(0, 12)} first shipped it.`
      : ".");
}

/** A shipped run as a report run. */
export function shippedReportRun(r: ShippedRun): ReportRun {
  return {
    id: r.id,
    kind: "shipped",
    title: r.meta.title,
    gpu: r.meta.gpu,
    date: r.meta.date,
    commit: r.meta.commit.judged,
    cells: r.cells,
    facts: flattenFacts(r.meta),
    measurements: r.meta.measurements,
    stable: true,
    machines: shippedMachines(r),
  };
}

/** This machine's judged cells as a report run. */
export function thisMachineRun(
  upstream: Record<string, CellResult[]>,
  tc: Partial<Toolchain> | undefined,
): ReportRun {
  const gpu = tc?.gpus?.[0]?.name ?? null;
  return {
    id: THIS_MACHINE,
    kind: "this machine",
    title: gpu
      ? `what this machine (${gpu}) judged in this reproduce`
      : "what this machine judged in this reproduce, on its CPU: Python solutions and references only (CUDA and Triton need a GPU)",
    gpu,
    date: null,
    commit: null,
    cells: upstream,
    facts: flattenFacts({ gpu, machine: { kind: "this machine" } }),
    stable: false,
    machines: `Judged and aggregated on this machine (${
      gpu ?? "no GPU: CPU judgements"
    }); its toolchain is below.`,
  };
}

/** What to build. */
export interface MultiRunInput {
  runs: ReportRun[];
  /** The run whose report sits at the top (the others go to runs/<id>/). */
  top: string;
  /** The run the claims are decided on. */
  claimsOn: string | null;
  claimsNote: string;
  params: AggregateParams;
  outDir: string;
  /** Where outDir will be published (trace links of shipped runs are relative to it). */
  publishedAt: string;
  root: string;
  claimsPath: string;
  toolchain?: Partial<Toolchain>;
  log: (msg: string) => void;
}

/** What was built: each run's summary, and the claims' statuses. */
export interface MultiRunResult {
  summaries: Record<string, AggregateSummary>;
  claims: { id: string; status: string }[];
}

const NOT_JUDGED_SQL = `SELECT s.language, count(*) AS n FROM solutions s
  WHERE NOT EXISTS (SELECT 1 FROM traces t WHERE t.solution = s.name)
  GROUP BY ALL ORDER BY s.language`;

/** Builds every run's report, the first screen and the every-run tables. */
export async function buildMultiRunReport(input: MultiRunInput): Promise<MultiRunResult> {
  const { runs, outDir, root, log } = input;
  const claimsFile = loadClaims(input.claimsPath, "claims.json");
  const inputs = new Map<string, RunClaimInputs>();
  const lines = new Map<string, RunLine>();
  const tables = new Map<string, { run: RunLine; table: Table }[]>();
  const summaries: Record<string, AggregateSummary> = {};
  let claimResults: Awaited<ReturnType<typeof decideClaims>> = [];
  // The top run last: its first screen needs every run's claim inputs.
  const ordered = [
    ...runs.filter((r) => r.id !== input.top),
    runs.find((r) => r.id === input.top)!,
  ];
  for (const run of ordered) {
    const isTop = run.id === input.top;
    const dir = isTop ? outDir : join(outDir, "runs", run.id);
    const pageAt = isTop ? input.publishedAt : join(input.publishedAt, "runs", run.id);
    const line: RunLine = {
      id: run.id,
      kind: run.kind,
      title: run.title,
      hardware: run.gpu ?? "CPU",
      date: run.date,
      commit: run.commit,
      counts: {},
      notJudged: [],
      href: isTop ? "#summary" : `runs/${run.id}/index.html`,
    };
    lines.set(run.id, line);
    const front = async () => {
      const claimsRun = input.claimsOn ? lines.get(input.claimsOn) ?? null : null;
      if (input.claimsOn && claimsRun) {
        claimResults = await decideClaims(
          claimsFile,
          runs.filter((r) => inputs.has(r.id)).map((r) => ({
            id: r.id,
            gpu: r.gpu,
            inputs: inputs.get(r.id)!,
          })),
          input.claimsOn,
          root,
        );
      }
      const runLines = runs.map((r) => lines.get(r.id)!);
      const first = renderFront(
        claimsRun ? claimResults : null,
        claimsRun,
        runLines,
        input.claimsNote,
      );
      return first + "\n" + renderApplySection(runs);
    };
    const summary = await runAggregate({
      fragments: fragmentsOf(run.cells),
      params: input.params,
      outDir: dir,
      root,
      toolchain: input.toolchain,
      log,
      stable: run.stable,
      linkFrom: run.stable ? pageAt : undefined,
      gitCommit: run.commit ?? undefined,
      machines: run.machines,
      heading: `tracepipe report — run ${run.id} (${run.kind}; ${
        run.gpu ?? "no GPU: CPU judgements"
      })`,
      front: isTop ? front : undefined,
      withDb: async (conn) => {
        inputs.set(run.id, await runClaimInputs(conn, claimsFile, run.facts, root, run.id));
        line.notJudged = await all(conn, NOT_JUDGED_SQL) as Row[];
        const hw = (await all(conn, "SELECT DISTINCT hardware FROM traces ORDER BY 1"))
          .map((r) => String(r.hardware));
        if (!run.gpu && hw.length) line.hardware = hw.join(", ");
      },
      onAnalysis: (a) => {
        line.counts = a.counts;
        for (const t of a.tables) {
          if (!tables.has(t.id)) tables.set(t.id, []);
          tables.get(t.id)!.push({ run: line, table: t });
        }
      },
    });
    summaries[run.id] = summary;
    // Each cell's outcome and latency, for comparing runs cell by cell (tools/ae/full.ts).
    writeFileSync(join(dir, "cells.csv"), toCsv(cellsTable(inputs.get(run.id)?.cells ?? [])));
    const best = writeBestOfSweep(run.cells, dir);
    log(`[aggregate] run ${run.id}: best of sweep, ${best.length} (kernel, definition) selections`);
  }
  writeFrontFiles(outDir, claimResults, input, [...runs.map((r) => lines.get(r.id)!)], tables);
  return { summaries, claims: claimResults.map((c) => ({ id: c.id, status: c.status })) };
}

const CELL_COLUMNS = ["solution", "definition", "uuid", "status", "latency_ms", "bound"];

/** A run's cells (solution, definition, workload uuid, status, latency) as a table. */
function cellsTable(cells: unknown[][]): Table {
  return {
    id: "cells",
    title: "Cells",
    caption:
      "Each (solution, workload) cell: its status, its latency (the minimum over its timed runs) and what bounded its time (host: the call's host submission took at least 0.8 of its median; device; empty where the harness did not record it).",
    columns: CELL_COLUMNS,
    rows: cells.map((c) => Object.fromEntries(CELL_COLUMNS.map((k, i) => [k, c[i]]))),
  };
}

function writeFrontFiles(
  outDir: string,
  claimResults: Awaited<ReturnType<typeof decideClaims>>,
  input: MultiRunInput,
  lines: RunLine[],
  tables: Map<string, { run: RunLine; table: Table }[]>,
): void {
  if (input.claimsOn) {
    const t = claimsTable(claimResults, `run ${input.claimsOn}`);
    writeFileSync(join(outDir, "claims.csv"), toCsv(t));
    writeFileSync(join(outDir, "claims.md"), toMarkdown(t));
  }
  const rt = runsTable(lines);
  writeFileSync(join(outDir, "runs.csv"), toCsv(rt));
  mkdirSync(join(outDir, "all-runs"), { recursive: true });
  for (const [id, perRun] of [...tables.entries()].sort(([a], [b]) => a < b ? -1 : 1)) {
    // Rows in the order of the runs table, whatever order the runs were built in.
    const sorted = lines.flatMap((l) => perRun.filter((p) => p.run.id === l.id));
    writeFileSync(join(outDir, "all-runs", `${id}.csv`), toCsv(allRunsTable(id, sorted)));
  }
}

/** The runs an ordinary reproduce reports: the shipped ones, then this machine's. */
export function liveRuns(
  shipped: ShippedRun[],
  upstream: Record<string, CellResult[]>,
  tc: Partial<Toolchain> | undefined,
): { runs: ReportRun[]; claimsOn: string | null; note: string } {
  const here = thisMachineRun(upstream, tc);
  const runs = [...shipped.map(shippedReportRun), here];
  if (here.gpu) {
    return { runs, claimsOn: THIS_MACHINE, note: "This machine judged on a GPU." };
  }
  const newest = newestGpuRun(shipped);
  return newest
    ? {
      runs,
      claimsOn: newest.id,
      note:
        "This machine has no GPU, so the claims are decided on the newest shipped GPU run; this machine's CPU judgements are reported below, labelled as such.",
    }
    : {
      runs,
      claimsOn: THIS_MACHINE,
      note: "No shipped GPU run is present; the claims are decided on this machine's run.",
    };
}

/** What `tp report --ship` builds. */
export interface ShippedReportInput {
  root: string;
  /** Where to write it (reports/ is written by publishing this folder there). */
  outDir: string;
  params: AggregateParams;
  log: (msg: string) => void;
}

/**
 * The committed report: the shipped runs alone, byte-stable (the same runs give the same bytes on
 * any machine). The newest shipped GPU run sits at the top and decides the claims; its links are
 * relative to reports/, where the report is published.
 */
export async function buildShippedReport(input: ShippedReportInput): Promise<MultiRunResult> {
  const dir = input.params.shippedRuns || "results";
  const shipped = listShippedRuns(join(input.root, dir), RUN_STAGES);
  if (!shipped.length) {
    throw new RunFolderError(`${dir}/: no shipped run (a folder holding a run.json)`);
  }
  const top = newestGpuRun(shipped) ?? shipped[shipped.length - 1];
  mkdirSync(input.outDir, { recursive: true });
  writeFileSync(join(input.outDir, "README.md"), shippedReadme(shipped.map((r) => r.id)));
  return await buildMultiRunReport({
    runs: shipped.map(shippedReportRun),
    top: top.id,
    claimsOn: top.id,
    claimsNote: "The committed report: the shipped runs alone, decided on the newest GPU run.",
    params: input.params,
    outDir: input.outDir,
    publishedAt: join(input.root, "reports"),
    root: input.root,
    claimsPath: join(input.root, "claims.json"),
    log: input.log,
  });
}

/** What `tp claims` decides: the claims on one run, every run loaded for the cross-run ones. */
export interface ClaimsOnRunsInput {
  root: string;
  runs: ShippedRun[];
  /** The run that decides (default: the newest GPU run, else the newest). */
  on?: string;
  claimsPath: string;
  params: AggregateParams;
}

/** Loads each run (definitions to traces, the analysis views) and decides every claim. */
export async function claimsOnRuns(
  input: ClaimsOnRunsInput,
): Promise<{ on: ReportRun; results: ClaimResult[] }> {
  const file = loadClaims(
    input.claimsPath,
    relative(input.root, input.claimsPath) || "claims.json",
  );
  const runs = input.runs.map(shippedReportRun);
  const on = input.on
    ? runs.find((r) => r.id === input.on)
    : (newestGpuRun(runs.map((r) => ({ ...r, meta: { gpu: r.gpu } }))) ?? runs[runs.length - 1]);
  if (!on) {
    throw new RunFolderError(
      `--on: no run "${input.on}" (runs: ${runs.map((r) => r.id).join(", ") || "none"})`,
    );
  }
  const claimRuns = [];
  for (const r of runs) {
    const db = await openDb(":memory:");
    try {
      await loadDatabase(db.conn, fragmentsOf(r.cells), input.params, () => {});
      const inputs = await runClaimInputs(db.conn, file, r.facts, input.root, r.id);
      claimRuns.push({ id: r.id, gpu: r.gpu, inputs });
    } finally {
      closeDb(db);
    }
  }
  return { on, results: await decideClaims(file, claimRuns, on.id, input.root) };
}

/** The committed report's README: what it is, and that an ordinary run does not write it. */
function shippedReadme(ids: string[]): string {
  return `${SHIPPED_MARKER_TITLE}

Built from the shipped runs in \`results/\` (${ids.join(", ")}) alone, byte for byte the same on
any machine: \`deno task tp report --ship\` rebuilds it, \`deno task tp report --check\` compares
(CI does, through tests/artifact_test.ts). Open \`index.html\`: the claims first, then each run.

An ordinary \`deno task reproduce\` never writes here: it publishes its report (the shipped runs
beside what that machine judged) into \`reports/latest/\`, which git ignores.
`;
}
