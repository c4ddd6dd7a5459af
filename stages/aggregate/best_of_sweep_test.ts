import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  formatDefinition,
  formatJsonl,
  formatSolution,
  loadTraceSet,
  Solution,
  solutionPath,
  type SweepIndexEntry,
  type Trace,
  tracesPath,
} from "../../pipeline/trace/mod.ts";
import { type CellResult, REPO_ROOT } from "../../pipeline/engine/mod.ts";
import { assertEquals, assertMatch } from "../../tests/assert.ts";
import { writeBestOfSweep } from "./stage.ts";
import { bestOfSweepTraces, selectBestOfSweep } from "./best_of_sweep.ts";

const DEF = loadTraceSet(join(REPO_ROOT, "data")).set.definitions.get("rmsnorm_h128")!;

function cell(id: string, files: Record<string, string>): CellResult {
  const dir = mkdtempSync(join(tmpdir(), `tp-bos-${id}-`));
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(join(dir, rel, ".."), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return { id, key: id, digest: id, dir, summary: null };
}

Deno.test("best of sweep is recorded: the fastest point that passed everywhere, as a table and a solution", () => {
  const point = (v: number) =>
    Solution.parse({
      name: `k__${DEF.name}__V-${v}`,
      definition: DEF.name,
      author: "tracepipe",
      spec: { language: "python", target_hardware: ["cuda"], entry_point: "m.py::run" },
      sources: [{
        path: "m.py",
        content: `V = ${v}\ndef run(hidden_states, weight, output): pass\n`,
      }],
    });
  const sols = [point(1), point(2), point(3)];
  const trace = (s: Solution, uuid: string, latency: number | null): Trace => ({
    definition: DEF.name,
    workload: { axes: { batch_size: 4 }, inputs: {}, uuid },
    solution: s.name,
    evaluation: {
      status: latency === null ? "INCORRECT_NUMERICAL" : "PASSED",
      environment: { hardware: "H100", libs: {} },
      timestamp: "t",
      log: "",
      correctness: { max_relative_error: 0, max_absolute_error: latency === null ? 1 : 0 },
      performance: latency === null
        ? null
        : { latency_ms: latency, reference_latency_ms: 1, speedup_factor: 1 / latency },
    },
  });
  // V-1: fast but wrong on one workload; V-2: fastest that passes everywhere; V-3: slower.
  const traces = [
    trace(sols[0], "a", 0.1),
    trace(sols[0], "b", null),
    trace(sols[1], "a", 0.3),
    trace(sols[1], "b", 0.5),
    trace(sols[2], "a", 0.4),
    trace(sols[2], "b", 0.6),
  ];
  const upstream = {
    definitions: [
      cell("defs", { [`definitions/rmsnorm/${DEF.name}.json`]: formatDefinition(DEF) }),
    ],
    generate: [cell("gen", {
      ...Object.fromEntries(sols.map((s) => [solutionPath(s, "rmsnorm"), formatSolution(s)])),
      "sweep-index.json": JSON.stringify(
        sols.map((s, i) => ({
          solution: s.name,
          kernel: "k",
          definition: DEF.name,
          point: { V: i + 1 },
        })),
      ),
    })],
    time: [cell("time", { [tracesPath("tracepipe", "rmsnorm", DEF.name)]: formatJsonl(traces) })],
  };
  const out = mkdtempSync(join(tmpdir(), "tp-bos-out-"));
  const best = writeBestOfSweep(upstream, out);
  assertEquals(best.map((b) => [b.chosen, b.medianLatencyMs]), [[sols[1].name, 0.4]]);
  const md = readFileSync(join(out, "tables", "best_of_sweep.md"), "utf8");
  assertEquals(
    md.includes(`| k | ${DEF.name} | ${sols[1].name} | V=2 | 0.4 | 2 | 2/3 |`),
    true,
    md,
  );
  const written = loadTraceSet(join(out, "best-of-sweep"), {
    knownDefinitions: new Map([[DEF.name, DEF]]),
  });
  assertEquals([...written.set.solutions.keys()], [`k__${DEF.name}__best`]);
});

Deno.test("best of sweep: lowest median over workloads among points that PASSED everywhere", () => {
  const index: SweepIndexEntry[] = ["a", "b", "c"].map((p) => ({
    solution: `k__d__P-${p}`,
    kernel: "k",
    definition: "d",
    point: { P: p },
  }));
  const sol = (name: string): Solution => ({
    name,
    definition: "d",
    author: "t",
    spec: {
      language: "python",
      target_hardware: ["H100"],
      entry_point: "m.py::run",
      dependencies: [],
      destination_passing_style: true,
      binding: null,
    },
    sources: [{ path: "m.py", content: name }],
  });
  const solutions = new Map(index.map((e) => [e.solution, sol(e.solution)]));
  const tr = (
    s: string,
    w: string,
    lat: number,
    status: "PASSED" | "INCORRECT_NUMERICAL" = "PASSED",
  ): Trace => ({
    definition: "d",
    solution: s,
    workload: { uuid: w, axes: {}, inputs: {} },
    evaluation: {
      status,
      environment: { hardware: "H100", libs: {} },
      timestamp: "t",
      log: "",
      correctness: { max_absolute_error: 0, max_relative_error: 0 },
      performance: status === "PASSED"
        ? { latency_ms: lat, reference_latency_ms: 1, speedup_factor: 1 / lat }
        : null,
    },
  });
  const traces = [
    tr("k__d__P-a", "w1", 1.0),
    tr("k__d__P-a", "w2", 3.0),
    tr("k__d__P-a", "w3", 2.0), // median 2.0
    tr("k__d__P-b", "w1", 0.5),
    tr("k__d__P-b", "w2", 0.5),
    tr("k__d__P-b", "w3", 9, "INCORRECT_NUMERICAL"), // fails w3
    tr("k__d__P-c", "w1", 1.5),
    tr("k__d__P-c", "w2", 1.6),
    tr("k__d__P-c", "w3", 9.0), // median 1.6
  ];
  const [best] = selectBestOfSweep(traces, index, solutions);
  assertEquals([best.chosen, best.medianLatencyMs, best.workloads], ["k__d__P-c", 1.6, 3]);
  assertEquals(best.solution.name, "k__d__best");
  assertEquals(best.solution.sources, solutions.get("k__d__P-c")!.sources);
  assertMatch(
    best.candidates.find((c) => c.solution === "k__d__P-b")?.reason,
    /not PASSED on workload w3/,
  );
  assertEquals(bestOfSweepTraces(best, traces).map((t) => t.solution), [
    "k__d__best",
    "k__d__best",
    "k__d__best",
  ]);
  assertEquals(
    selectBestOfSweep(traces.filter((t) => t.solution === "k__d__P-b"), index, solutions),
    [],
  );
});
