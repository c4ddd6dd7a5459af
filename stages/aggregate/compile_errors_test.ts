/**
 * The compile-error taxonomy files each failure under its true first error. The logs are real: the
 * failing kernels of tests/fixtures/aggregate/compile_logs/cases were built by the harness's builder
 * with nvcc 13.0 (sm_90a) and g++ (make_logs.py), so the torch builds carry the `-Xptxas=-O3` flag
 * the harness passes, which once filed every CUDA failure under "ptxas".
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  emptyTraceSet,
  type Solution,
  type Trace,
  writeTraceSet,
} from "../../pipeline/trace/mod.ts";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import { classifyCompileError, firstErrorLine } from "./compile_errors.ts";
import { all, closeDb, openDb } from "./db.ts";
import { loadDatabase } from "./load.ts";
import { AggregateParams } from "./params.ts";
import { gemmDefinition } from "./synth.ts";

const DIR = new URL("../../tests/fixtures/aggregate/compile_logs/", import.meta.url).pathname;

interface Case {
  binding: string;
  language: "cuda" | "cpp";
  entry_point: string;
  category: string;
  first_error: string;
}
const CASES: Record<string, Case> = JSON.parse(readFileSync(join(DIR, "cases.json"), "utf8")).cases;
const logOf = (name: string) => readFileSync(join(DIR, `${name}.log`), "utf8");

Deno.test("compile-error fixtures: real logs, the torch CUDA builds with the harness's -Xptxas=-O3", () => {
  assert(Object.keys(CASES).length >= 10);
  for (const [name, c] of Object.entries(CASES)) {
    const log = logOf(name);
    if (c.binding === "torch" && c.language === "cuda") {
      assertMatch(log, /nvcc .*-Xptxas=-O3/, `${name}: the logged nvcc command`);
    }
  }
});

Deno.test("each failure is filed under its first error, not under a flag of the command line", () => {
  for (const [name, c] of Object.entries(CASES)) {
    const got = classifyCompileError(logOf(name));
    assert(got.firstError !== null, `${name}: no first error found`);
    assert(got.firstError!.includes(c.first_error), `${name}: first error ${got.firstError}`);
    assertEquals(got.category, c.category, `${name}: first error ${got.firstError}`);
  }
});

Deno.test("first error: command lines, warnings, excerpts and wrappers are skipped", () => {
  const log = [
    "RuntimeError: Error building extension 'tp_x'",
    "[1/2] /usr/local/cuda/bin/nvcc -c k.cu -Xptxas=-O3 -o k.cuda.o",
    "FAILED: k.cuda.o",
    'k.cu:2:2: warning: #warning "error: not yet" [-Wcpp]',
    '    2 | #warning "error: not yet"',
    "ptxas warning : Value of threads per SM is out of range",
    "ptxas error   : Entry function '_Z1kv' uses too much shared data (0x40000 bytes, 0xc000 max)",
    "ninja: build stopped: subcommand failed.",
  ].join("\n");
  assertMatch(firstErrorLine(log)!, /^ptxas error/);
  assertEquals(classifyCompileError(log).category, "resource limits (ptxas/shared memory)");
  // Only the flag mentions ptxas here: the first error is a syntax error.
  const flagOnly = log.replace(/ptxas error.*\n/, 'k.cu(4): error: expected a ";"\n');
  assertEquals(classifyCompileError(flagOnly).category, "syntax error");
  assertEquals(classifyCompileError("").category, "no log");
  assertEquals(classifyCompileError("build exceeded 600 s").category, "build timeout or crash");
  assertEquals(classifyCompileError("k.py:3: invalid syntax").category, "syntax error");
  assertEquals(
    classifyCompileError("nvcc fatal   : Unsupported gpu architecture 'compute_200'").firstError,
    "nvcc fatal   : Unsupported gpu architecture 'compute_200'",
  );
});

Deno.test("compile_error_taxonomy over the real logs: every fixture in its category", async () => {
  const def = gemmDefinition(4, 4);
  const workload = { uuid: "g1", axes: { M: 1 }, inputs: { A: { type: "random" as const } } };
  const set = emptyTraceSet("");
  set.definitions.set(def.name, def);
  set.workloads.set(def.name, [workload]);
  for (const [name, c] of Object.entries(CASES)) {
    const sol: Solution = {
      name,
      definition: def.name,
      author: "fixture",
      spec: {
        language: c.language,
        target_hardware: ["NVIDIA H100"],
        entry_point: c.entry_point,
        dependencies: [],
        destination_passing_style: true,
        // c-abi is the harness's own binding (an override), not a FlashInfer one.
        binding: c.binding === "torch" ? "torch" : null,
      },
      sources: [{ path: c.entry_point.split("::")[0], content: "// fixture\n" }],
    };
    set.solutions.set(name, sol);
    const t: Trace = {
      definition: def.name,
      workload,
      solution: name,
      evaluation: {
        status: "COMPILE_ERROR",
        environment: { hardware: "NVIDIA H100 80GB HBM3", libs: {} },
        timestamp: "2026-11-23T00:00:00",
        log: logOf(name),
        correctness: null,
        performance: null,
      },
    };
    set.traces.push(t);
  }
  const dir = mkdtempSync(join(tmpdir(), "agg-ce-"));
  const db = await openDb(":memory:");
  try {
    writeTraceSet(set, dir);
    await loadDatabase(
      db.conn,
      [{ stage: "fixture", cellId: "ce", cellKey: "k", dir }],
      AggregateParams.parse({}),
      () => {},
    );
    const rows = await all(db.conn, "SELECT solution, category FROM compile_error_runs ORDER BY 1");
    assertEquals(
      rows.map((r) => [r.solution, r.category]),
      Object.entries(CASES).map(([n, c]) => [n, c.category]).sort((a, b) => a[0] < b[0] ? -1 : 1),
    );
    const tax = await all(db.conn, "SELECT category, n_runs, example FROM compile_error_taxonomy");
    const ptxas = tax.filter((r) => r.category === "resource limits (ptxas/shared memory)");
    assertEquals(ptxas.reduce((s, r) => s + Number(r.n_runs), 0), 2);
    for (const r of tax) assert(!String(r.example).includes("-Xptxas"), String(r.example));
  } finally {
    closeDb(db);
    rmSync(dir, { recursive: true, force: true });
  }
});
