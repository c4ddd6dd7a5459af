/**
 * Key isolation: a stage's cell keys digest the code it runs, so a file may appear only in the
 * code digests of the stages that run it. Pinned here on the real stages' code graphs, for the
 * edits that used to re-key far more than their own stage.
 */
import { codeDigest, REPO_ROOT } from "../pipeline/engine/mod.ts";
import { loadStages } from "../stages/mod.ts";
import { assert, assertEquals } from "./assert.ts";

/** Stage name → the repo-relative files its code digest covers. */
async function codeFilesByStage(): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const s of await loadStages("all")) {
    out.set(s.name, codeDigest(REPO_ROOT, s.module, s.codeFiles ?? []).files);
  }
  return out;
}

/** The stages whose keys a file is part of. */
function stagesKeyedOn(graphs: Map<string, string[]>, file: string): string[] {
  return [...graphs].filter(([, files]) => files.includes(file)).map(([name]) => name);
}

Deno.test("editing a file re-keys only the stages that run it", async () => {
  const graphs = await codeFilesByStage();
  for (const [name, files] of graphs) assert(files.length > 5, `${name}: graph looks empty`);
  const expect: Array<[string, string[]]> = [
    // The report's charts: aggregate alone (extract once imported the renderer from here).
    ["stages/aggregate/charts.ts", ["aggregate"]],
    // The workload checker: the stages that run it (extract filters and repairs workloads with
    // it; verify skips a workload it finds unrunnable). compile and time do not.
    ["pipeline/trace/workload_check.ts", ["extract", "verify"]],
    // The LLM agent: generate alone (aggregate once imported generate's module).
    ["stages/generate/llm/agent.ts", ["generate"]],
    // The serving model: the stages that simulate (extract replays collect's run).
    ["pipeline/serving/simulate.ts", ["collect", "extract"]],
    // The harness judge's entry point: the judging stages.
    ["pipeline/harness/judge/__main__.py", ["compile", "verify", "time"]],
    // Each judging command's module: the stages that run that command, no other (the time
    // command's edits once re-ran every compile and verify cell on the GPU). time prepares builds
    // with compile's code, so compile's module is in all three.
    ["pipeline/harness/judge/th_time.py", ["time"]],
    ["pipeline/harness/judge/th_timing.py", ["time"]],
    ["pipeline/harness/judge/th_verify.py", ["verify"]],
    ["pipeline/harness/judge/th_compile.py", ["compile", "verify", "time"]],
    // The timing gate's PTX, a file of the judge's own that its code loads: the same stages.
    ["pipeline/harness/judge/gate.ptx", ["compile", "verify", "time"]],
    // DuckDB: never in a judging stage's key (nor loaded by one: see dependencies_test.ts).
    ["pipeline/lib/duckdb.ts", ["collect", "extract"]],
  ];
  for (const [file, stages] of expect) {
    assertEquals(stagesKeyedOn(graphs, file), stages, file);
  }
});

Deno.test("test-only code is in no stage's key", async () => {
  const graphs = await codeFilesByStage();
  for (const [name, files] of graphs) {
    const testOnly = files.filter((f) =>
      /_test\.ts$|\/testdata\/|^tests\/|\/tests\/|th_run\.py$|test_harness/.test(f)
    );
    assertEquals(testOnly, [], `${name} is keyed on test code`);
  }
});
