/**
 * Equal latencies pick the same best solution (the smallest name) whatever order the rows arrive in,
 * so a table rebuilt from the same traces has the same bytes (the committed report is checked so).
 */
import { assertEquals } from "../../tests/assert.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { all, closeDb, openDb } from "./db.ts";
import { loadDatabase } from "./load.ts";
import { AggregateParams } from "./params.ts";
import { formatDefinition, formatSolution, type Solution } from "../../pipeline/trace/mod.ts";
import { gemmDefinition } from "./synth.ts";

const DEF = gemmDefinition(8, 8);

function solution(name: string): Solution {
  return {
    name,
    definition: DEF.name,
    author: "alice",
    spec: {
      language: "python",
      target_hardware: ["cpu"],
      entry_point: "main.py::run",
      destination_passing_style: false,
    },
    sources: [{ path: "main.py", content: "def run(A, B):\n    return A @ B.T\n" }],
  } as unknown as Solution;
}

function trace(sol: string, uuid: string) {
  return JSON.stringify({
    definition: DEF.name,
    workload: { axes: { M: 1 }, inputs: {}, uuid },
    solution: sol,
    evaluation: {
      status: "PASSED",
      environment: { hardware: "cpu:x86_64", libs: {} },
      timestamp: "2026-01-01T00:00:00",
      log: "",
      correctness: { max_relative_error: 0, max_absolute_error: 0 },
      performance: { latency_ms: 1, reference_latency_ms: 1, speedup_factor: 1 },
    },
  });
}

/** The best solution of a tie between "zeta" and "alpha", with `first` loaded first. */
async function bestOfTie(first: string, second: string): Promise<unknown[]> {
  const dir = mkdtempSync(join(tmpdir(), "ties-"));
  try {
    mkdirSync(join(dir, "definitions"), { recursive: true });
    writeFileSync(join(dir, "definitions", `${DEF.name}.json`), formatDefinition(DEF));
    mkdirSync(join(dir, "solutions"), { recursive: true });
    mkdirSync(join(dir, "traces"), { recursive: true });
    for (const [i, s] of [first, second].entries()) {
      writeFileSync(join(dir, "solutions", `${s}.json`), formatSolution(solution(s)));
      // Files load in name order: "a_…" before "b_…", whatever the solutions are called.
      writeFileSync(join(dir, "traces", `${"ab"[i]}_${s}.jsonl`), trace(s, "w1") + "\n");
    }
    const db = await openDb(":memory:");
    try {
      const frag = { stage: "t", cellId: "c", cellKey: "k", dir };
      await loadDatabase(db.conn, [frag], AggregateParams.parse({}), () => {});
      await db.conn.run("SET threads = 1");
      return (await all(
        db.conn,
        "SELECT best_solution FROM best_run_per_author_workload UNION ALL SELECT best_solution FROM best_run_per_author_language_workload",
      )).map((r) => r.best_solution);
    } finally {
      closeDb(db);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

Deno.test("a tie in latency goes to the smallest solution name, whichever loads first", async () => {
  assertEquals(await bestOfTie("zeta", "alpha"), ["alpha", "alpha"]);
  assertEquals(await bestOfTie("alpha", "zeta"), ["alpha", "alpha"]);
});
