/**
 * Fixture runs for the claims and artifact tests: tests/fixtures/aggregate/basic (a hand-computed
 * TraceSet, see aggregate_test.ts) laid out as a shipped run folder (run.json, cells/…/cell.json),
 * on a GPU or on a CPU, with every latency optionally scaled (a second run of the same cells).
 */
import { cpSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = new URL("../../../", import.meta.url).pathname;
/** The hand-computed fixture TraceSet. */
export const BASIC = join(ROOT, "tests/fixtures/aggregate/basic");

/** What a fixture run differs in. */
export interface FixtureRunOptions {
  gpu: string | null;
  date?: string;
  /** Every latency multiplied by this (1: the fixture's own). */
  scale?: number;
  /** The traces' evaluation.environment.hardware (default: the fixture's H100). */
  hardware?: string;
  /** Extra run.json fields (measurements, …). */
  extra?: Record<string, unknown>;
}

function rewriteTraces(dir: string, scale: number, hardware?: string): void {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) rewriteTraces(p, scale, hardware);
    else if (n.endsWith(".jsonl")) {
      const lines = readFileSync(p, "utf8").split("\n").map((l) => {
        try {
          const t = JSON.parse(l);
          const perf = t.evaluation?.performance;
          if (perf?.latency_ms) perf.latency_ms *= scale;
          if (hardware) t.evaluation.environment.hardware = hardware;
          return JSON.stringify(t);
        } catch {
          return l; // the fixture's malformed line stays malformed
        }
      });
      writeFileSync(p, lines.join("\n"));
    }
  }
}

/** Writes the fixture as run `id` under `parent`; returns the run folder. */
export function writeFixtureRun(parent: string, id: string, o: FixtureRunOptions): string {
  const dir = join(parent, id);
  const cell = join(dir, "cells", "fixture", "basic");
  mkdirSync(cell, { recursive: true });
  cpSync(BASIC, cell, { recursive: true });
  if ((o.scale && o.scale !== 1) || o.hardware) {
    rewriteTraces(join(cell, "traces"), o.scale ?? 1, o.hardware);
  }
  writeFileSync(
    join(cell, "cell.json"),
    JSON.stringify({ stage: "fixture", id: "basic", key: "k", summary: null }),
  );
  writeFileSync(
    join(dir, "run.json"),
    JSON.stringify({
      id,
      title: `fixture run ${id}`,
      date: o.date ?? "2026-01-01",
      gpu: o.gpu,
      commit: { judged: "0000000000000000000000000000000000000000" },
      ...o.extra,
    }),
  );
  return dir;
}

// alice's CUDA cells in the fixture: alice_cuda_gemm_1 passes g1-g3, alice_cuda_gemm_2 passes g1
// only (CE on g2, g3): 4 of 6 cells, 66.7 %.
const ALICE_CUDA =
  "SELECT correctness_pct AS value, n_cells AS n FROM correctness_rate_by_language_author WHERE author = 'alice' AND language = 'cuda'";

/** A claims file for the fixture: a claim that passes, one that fails, one needing a GPU, one no data decides, one across runs. */
export const FIXTURE_CLAIMS = {
  requirements: {
    gpu: {
      sql: "SELECT count(*) > 0 AS ok FROM run_facts WHERE key = 'gpu' AND text IS NOT NULL",
      why: "needs a GPU run",
    },
  },
  claims: [
    { id: "t.pass", within: 5, paper: 70 },
    { id: "t.fail", op: ">=", value: 90 },
  ].map((c) => ({
    id: c.id,
    source: "paper",
    where: "fixture",
    claim: `alice's CUDA correctness (${c.id})`,
    paper: c.paper ?? null,
    unit: "%",
    sql: ALICE_CUDA,
    check: c.within ? { op: "within", abs: c.within } : { op: c.op, value: c.value },
    how: "by hand",
  })).concat([
    {
      id: "t.gpu",
      source: "project",
      where: "fixture",
      claim: "needs a GPU",
      paper: null,
      unit: "",
      sql: ALICE_CUDA,
      check: { op: ">=", value: 0 },
      how: "by hand",
      requires: ["gpu"],
    } as never,
    {
      id: "t.empty",
      source: "project",
      where: "fixture",
      claim: "nobody named carol",
      paper: null,
      unit: "",
      sql:
        "SELECT max(correctness_pct) AS value FROM correctness_rate_by_language_author WHERE author = 'carol'",
      check: { op: ">=", value: 0 },
      empty: "carol was not judged",
      how: "by hand",
    } as never,
    {
      id: "t.runs",
      source: "project",
      where: "fixture",
      claim: "two runs agree within 2 %",
      paper: null,
      unit: "%",
      scope: "runs",
      sql:
        "WITH a AS (SELECT * FROM run_cells WHERE run = '{run}' AND latency_ms > 0), b AS (SELECT * FROM run_cells WHERE run <> '{run}' AND latency_ms > 0) SELECT 100 * median(abs(b.latency_ms / a.latency_ms - 1)) AS value, count(*) AS n FROM a JOIN b USING (solution, definition, uuid) HAVING count(*) > 0",
      check: { op: "<=", value: 2 },
      empty: "needs a second run",
      how: "by hand",
    } as never,
  ]),
};
