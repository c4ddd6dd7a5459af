import { REPO_ROOT } from "../pipeline/engine/mod.ts";
import { assert, assertEquals } from "./assert.ts";
import { importEdges, packageCycles, violation } from "./dependencies.ts";

Deno.test("no stage imports another stage, the engine imports no stage, faces are the doors", () => {
  const edges = importEdges(REPO_ROOT, ["pipeline", "stages", "tools", "cuda", "triton"]);
  assert(edges.length > 100, `only ${edges.length} imports found: is the scanner broken?`);
  const problems = edges.map(violation).filter((v): v is string => v !== null);
  assertEquals(problems, []);
  assertEquals(packageCycles(edges), []);
});

Deno.test("the rule catches each cross-stage import the tree had before the restructuring", () => {
  // The five couplings of main 698ba10, as they would read in today's layout.
  const before = [
    { from: "stages/extract/stage.ts", to: "stages/collect/stage.ts" },
    { from: "stages/extract/stage.ts", to: "stages/aggregate/charts.ts" },
    { from: "stages/verify/stage.ts", to: "stages/extract/constraints.ts" },
    { from: "stages/aggregate/stage.ts", to: "stages/generate/stage.ts" },
    { from: "pipeline/cli.ts", to: "", computed: true },
  ];
  for (const e of before) assert(violation(e) !== null, `${e.from} -> ${e.to} was allowed`);
  // Even through a face, a stage may not import another stage.
  assert(violation({ from: "stages/verify/stage.ts", to: "stages/extract/mod.ts" }) !== null);
  // The engine may not import the trace format, a stage or the harness.
  for (
    const to of ["pipeline/trace/mod.ts", "stages/aggregate/mod.ts", "pipeline/harness/mod.ts"]
  ) {
    assert(violation({ from: "pipeline/engine/store.ts", to }) !== null, to);
  }
  // Scaling out is the application's business: the engine and the stages never import it, and
  // the CLI goes through its face.
  for (const from of ["pipeline/engine/dag.ts", "stages/verify/stage.ts"]) {
    assert(violation({ from, to: "pipeline/scale/mod.ts" }) !== null, from);
  }
  assert(violation({ from: "pipeline/cli.ts", to: "pipeline/scale/shard.ts" }) !== null);
  assertEquals(violation({ from: "pipeline/scale/slurm.ts", to: "stages/mod.ts" }), null);
  // So is the nightly refresh: it may import faces and the registry; nothing below it imports it.
  assertEquals(violation({ from: "pipeline/refresh/night.ts", to: "stages/mod.ts" }), null);
  assertEquals(
    violation({ from: "pipeline/refresh/night.ts", to: "pipeline/harness/mod.ts" }),
    null,
  );
  for (
    const from of ["pipeline/engine/dag.ts", "pipeline/trace/validate.ts", "stages/time/stage.ts"]
  ) {
    assert(violation({ from, to: "pipeline/refresh/mod.ts" }) !== null, from);
  }
  assert(violation({ from: "pipeline/cli.ts", to: "pipeline/refresh/night.ts" }) !== null);
  // Reaching past a face is caught; importing through it is not.
  assert(violation({ from: "stages/time/stage.ts", to: "pipeline/trace/traceset.ts" }) !== null);
  assertEquals(violation({ from: "stages/time/stage.ts", to: "pipeline/trace/mod.ts" }), null);
  // Tests may import what they test.
  assertEquals(violation({ from: "stages/time/time_test.ts", to: "stages/verify/stage.ts" }), null);
});

Deno.test("a cycle between packages is reported", () => {
  const cycles = packageCycles([
    { from: "pipeline/trace/a.ts", to: "pipeline/lib/mod.ts" },
    { from: "pipeline/lib/b.ts", to: "pipeline/trace/mod.ts" },
  ]);
  assertEquals(cycles.length, 1);
});

Deno.test("the judging stages never load DuckDB or Vega, even through a face", async () => {
  for (const stage of ["compile", "verify", "time"]) {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", `stages/${stage}/mod.ts`],
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "null",
    }).output();
    assert(r.success, `deno info failed for ${stage}`);
    const modules = (JSON.parse(new TextDecoder().decode(r.stdout)).modules as Array<
      { specifier: string }
    >).map((m) => m.specifier);
    assert(modules.some((m) => m.includes("pipeline/harness/")), `${stage}: graph looks empty`);
    for (const heavy of ["@duckdb", "vega"]) {
      const hit = modules.find((m) => m.includes(heavy));
      assertEquals(hit, undefined, `${stage} loads ${heavy}`);
    }
  }
});
