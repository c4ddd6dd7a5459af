/**
 * The apply stage on the aggregate fixture (tests/fixtures/aggregate/basic, hand-checked traces): the
 * ranked table, the pinned selection, the written sets, purity and publishing.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { assert, assertEquals } from "../../tests/assert.ts";
import { type CellResult, REPO_ROOT } from "../../pipeline/engine/mod.ts";
import { loadTraceSet, validatePath } from "../../pipeline/trace/mod.ts";
import {
  ApplyParams,
  applyStage,
  keyJson,
  pinnedSelection,
  PUBLISH_DIR,
  rankedTable,
} from "./mod.ts";

const FIXTURE = join(REPO_ROOT, "tests/fixtures/aggregate/basic");
/** The fixture's `sub` folder alone, as the cell of the stage that makes such objects holds it. */
const part = (sub: string) => {
  const dir = mkdtempSync(`/tmp/tp-apply-${sub}-`);
  cpSync(join(FIXTURE, sub), join(dir, sub), { recursive: true });
  return dir;
};
const PARTS = {
  definitions: part("definitions"),
  generate: part("solutions"),
  time: part("traces"),
};
const cell = (id: string, dir: string, digest = "d0"): CellResult => ({
  id,
  key: "k",
  digest,
  dir,
  summary: null,
});
const upstream = (timeDigest = "d0") => ({
  definitions: [cell("definitions", PARTS.definitions)],
  generate: [cell("generate", PARTS.generate)],
  verify: [],
  time: [cell("time", PARTS.time, timeDigest)],
});

async function runStage(params: Partial<ApplyParams>, timeDigest = "d0") {
  const ctx = {
    params: ApplyParams.parse(params),
    root: REPO_ROOT,
    upstream: upstream(timeDigest),
    toolchain: {} as never,
    env: {},
    log: () => {},
  };
  const [plan] = await applyStage.plan(ctx);
  const outDir = mkdtempSync("/tmp/tp-apply-");
  let summary: Record<string, number> = {};
  await applyStage.run!({
    plan,
    key: "k",
    outDir,
    log: () => {},
    setSummary: (s) => (summary = s as Record<string, number>),
    signal: new AbortController().signal,
  }, ctx);
  const json = (f: string) => JSON.parse(readFileSync(join(outDir, f), "utf8"));
  return { plan, outDir, summary, table: json("apply_table.json"), pinned: json("pinned.json") };
}

Deno.test("apply: the fastest solution per exact key, def_best by keys won, ties to the smaller name", async () => {
  const { table } = await runStage({ max_rtol: 1e-2 });
  assertEquals(table.index.gemm_n4_k4, {
    [keyJson({ M: 1 })]: "alice_cuda_gemm_2", // 20x beats 10x and 5x
    [keyJson({ M: 2 })]: "alice_cuda_gemm_1", // 10x, tied with bob_cuda_gemm: the smaller name
    [keyJson({ M: 4 })]: "alice_cuda_gemm_1", // the only PASSED one
  });
  assertEquals(table.def_best, { gemm_n4_k4: "alice_cuda_gemm_1", rmsnorm_h8: "alice_triton_rms" });
  assertEquals(table.index.rmsnorm_h8, {
    [keyJson({ batch_size: 1 })]: "alice_triton_rms",
    [keyJson({ batch_size: 2 })]: "bob_triton_rms",
  });
  assertEquals(keyJson({ b: 2, M: 16 }), '{"axes":[["M",16],["b",2]],"feats":[]}');
});

Deno.test("apply: flashinfer-bench's default max_rtol 1e-5 keeps none of the fixture's 1e-3 errors", async () => {
  const { table, pinned, summary } = await runStage({});
  assertEquals(table.index, {});
  assertEquals(pinned.solutions, {});
  assertEquals(summary.traces, 21); // the set is still written whole (the broken line left out)
});

Deno.test("apply: pinned takes, per definition, a solution that never failed, most workloads first", async () => {
  const { pinned } = await runStage({ max_rtol: 1e-2 });
  // gemm: alice_cuda_gemm_1 passed all 3 workloads; bob 2; the others failed one.
  assertEquals(pinned.solutions.gemm_n4_k4, "alice_cuda_gemm_1");
  assertEquals(pinned.choices.gemm_n4_k4.workloads, 3);
  assertEquals(pinned.choices.gemm_n4_k4.eligible, 2);
  // rmsnorm: flashinfer_wrapper_rms and alice_triton_rms tie (geomean 707x): the smaller name.
  assertEquals(pinned.solutions.rmsnorm_h8, "alice_triton_rms");
  const ex = await runStage({ max_rtol: 1e-2, exclude_authors: ["alice"] });
  assertEquals(ex.pinned.solutions, {
    gemm_n4_k4: "bob_cuda_gemm",
    rmsnorm_h8: "flashinfer_wrapper_rms",
  });
});

Deno.test("apply: the cell is a valid TraceSet, its pinned/ folder one solution per definition, bytes stable", async () => {
  const a = await runStage({ max_rtol: 1e-2 });
  const v = await validatePath(a.outDir);
  // The fixture's solutions are stubs ("# fixture") whose entry points define nothing: the only
  // complaint allowed is about them.
  const errors = v.diagnostics.filter((d) =>
    d.level === "error" && d.path !== "$.spec.entry_point"
  );
  assertEquals(errors, []);
  const { set } = loadTraceSet(join(a.outDir, "pinned"));
  assertEquals([...set.solutions.keys()].sort(), ["alice_cuda_gemm_1", "alice_triton_rms"]);
  assertEquals([...set.definitions.keys()].sort(), ["gemm_n4_k4", "rmsnorm_h8"]);
  const b = await runStage({ max_rtol: 1e-2 });
  for (const f of ["apply_table.json", "pinned.json", "traces/alice/gemm/gemm_n4_k4.jsonl"]) {
    assertEquals(
      readFileSync(join(a.outDir, f), "utf8"),
      readFileSync(join(b.outDir, f), "utf8"),
      f,
    );
  }
});

Deno.test("apply: the cell's key follows the time cells' digests", async () => {
  const a = await runStage({}, "d0");
  const b = await runStage({}, "d1");
  assert(a.plan.inputs.time !== b.plan.inputs.time);
  assertEquals(a.plan.inputs.generate, b.plan.inputs.generate);
});

Deno.test("apply: publish copies the latest cell to .tracepipe/apply, replacing the last one", async () => {
  const { outDir } = await runStage({ max_rtol: 1e-2 });
  const root = mkdtempSync("/tmp/tp-apply-root-");
  const cells = [cell("all", outDir)];
  await applyStage.publish!({ cells, root, log: () => {} });
  await applyStage.publish!({ cells, root, log: () => {} });
  assert(existsSync(join(root, PUBLISH_DIR, "pinned.json")));
  assert(existsSync(join(root, PUBLISH_DIR, "pinned", "solutions")));
  assert(!existsSync(`${join(root, PUBLISH_DIR)}.tmp-${Deno.pid}`));
});

Deno.test("apply: the policies do not depend on the order traces were read in", () => {
  const { set } = loadTraceSet(FIXTURE);
  const p = { max_atol: 1e-2, max_rtol: 1e-2, exclude_authors: [] };
  const reversed = [...set.traces].reverse();
  // gemm M=2: alice_cuda_gemm_1 and bob_cuda_gemm both at 10x; read bob first, alice still wins.
  assertEquals(rankedTable(reversed, set.solutions, p), rankedTable(set.traces, set.solutions, p));
  assertEquals(
    pinnedSelection(reversed, set.solutions, p),
    pinnedSelection(set.traces, set.solutions, p),
  );
});
