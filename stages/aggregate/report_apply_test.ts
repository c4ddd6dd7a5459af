/**
 * The report's apply() section: a run's measurements.apply as the dispatch, end-to-end and paged
 * tables with one sentence of findings beside the paper's numbers; the one line saying how to
 * measure when no run has any; a malformed measurement named by field; and the section on the
 * first screen of a report built from a fixture shipped run.
 */
import { assert, assertEquals, assertMatch, assertThrows } from "../../tests/assert.ts";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  APPLY_HOW,
  applyFindings,
  ApplyMeasurements,
  applyTables,
  PAPER_APPLY,
  renderApplySection,
} from "./report_apply.ts";
import { buildShippedReport } from "./report_runs.ts";
import { AggregateParams } from "./params.ts";
import { RunFolderError } from "./runs.ts";
import { writeFixtureRun } from "./testdata/fixture_run.ts";
import { e2eSummaryRow } from "../../tests/fixtures/apply.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

/** A measurements.apply as tools/ae/apply_measurements.ts writes it. */
const MEASURED = {
  e2e_overhead_pct: 0.42,
  dispatch_overhead_ns: 700.5,
  tokens_identical: true,
  additivity_max_dev_pct: 20,
  graph_overhead_pct: 0.3,
  dispatch: [
    { case: "plain call", ns_per_call: 60, overhead_ns: 0 },
    { case: "apply, hit (solution = fallback)", ns_per_call: 760.5, overhead_ns: 700.5 },
  ],
  e2e: [
    e2eSummaryRow(),
    {
      dtype: "float16",
      batch: 64,
      unpatched_ms: 2000,
      fallback_ms: null,
      fallback_overhead_pct: null,
      project_ms: 1000,
      project_speedup: 2,
      fallback_tokens_equal: null,
      project_tokens_equal: 1,
      fallback_hits: 0,
      project_hits: 0,
      project_definitions: [],
      fallback_error: "RuntimeError: boom",
    },
  ],
  graphs: [{
    dtype: "bfloat16",
    batch: 16,
    unpatched_ms: 3,
    fallback_ms: 3.009,
    fallback_overhead_pct: 0.3,
    project_ms: null,
    slow_ms: 6.2,
    fallback_argmax_equal: 1,
    fallback_in_capture: 0,
    errors: ["project: RuntimeError: boom"],
  }],
  paged: [{ batch: 16, torch_ms: 900, project_ms: 300, speedup: 3, tokens_equal: 1, hits: 512 }],
  failed_sections: [],
  source: { file: "apply_bench.json", device: "NVIDIA H100 80GB HBM3", torch: "2.11.0+cu130" },
};

Deno.test("the paper's apply() numbers are data/paper-figures.json's", () => {
  const fig = JSON.parse(readFileSync(join(ROOT, "data/paper-figures.json"), "utf8"))
    .apply_end_to_end.derived;
  assertEquals(PAPER_APPLY.dispatchPerCallUs, fig.dispatch_cost.per_call_us);
  assertEquals(PAPER_APPLY.e2eOverheadMaxPct, fig.dispatch_cost.e2e_overhead_percent_max);
  assertEquals(PAPER_APPLY.fallbackOverheadPct, fig.apply_fallback_overhead_percent.values);
});

Deno.test("apply findings: one sentence, ours beside the paper's, only what was measured", () => {
  const a = ApplyMeasurements.parse(MEASURED);
  assertEquals(
    applyFindings(a),
    "Dispatch adds 701 ns per call on a hit (0.701 µs; paper: 1-2 µs); patching the model with the fallback costs at most 0.42 % end to end in eager generation over 1 (dtype, batch) run, with the unpatched model's greedy tokens; replayed as a CUDA graph, where dispatch happens at capture only, the fallback-patched forward costs at most 0.3 % more than the unpatched one (the paper's Fig. 8 setting: < 0.8 %, reproduced); a deliberately slower solution's end-to-end slowdown is within 20 % of the sum over calls of its per-call difference (kernel differences carry through to end-to-end latency, as in the paper's Fig. 8); the project's kernels run the model 1.25–2× as fast as unpatched; the paged decoder runs 3× as fast on the project's attention kernels.",
  );
  const worse = ApplyMeasurements.parse({
    e2e_overhead_pct: 1.5,
    tokens_identical: false,
    failed_sections: ["paged"],
  });
  assertEquals(
    applyFindings(worse),
    "Patching the model with the fallback costs at most 1.5 % end to end in eager generation, but its greedy tokens differ from the unpatched model's; the section paged stopped with an error (its rows may be partial).",
  );
  assertEquals(applyFindings(ApplyMeasurements.parse({})), "Nothing was measured.");
});

Deno.test("apply tables: dispatch beside the paper's 1-2 µs, e2e beside Fig. 8 by batch, the paged decoder", () => {
  const [dispatch, e2e, graphs, paged] = applyTables("r1", ApplyMeasurements.parse(MEASURED));
  assertEquals(dispatch.rows.map((r) => r.paper), [null, "1-2 µs"]);
  assertEquals(e2e.rows[0], {
    dtype: "bfloat16",
    batch: 1,
    "unpatched ms": 1000,
    "fallback ms": 1004.2,
    "overhead %": 0.42,
    "paper overhead %": 0.43,
    "project ms": 800,
    "project speedup": 1.25,
    "tokens equal": "1 / 0.9688",
    "project kernels": "gemm, rmsnorm",
    "slower: measured / predicted ms": "120 / 100",
    error: null,
  });
  assertEquals(e2e.columns.at(-1), "error");
  // A row measured before the slower solution existed (or with --skip slow) leaves its cell empty.
  assertEquals(e2e.rows[1]["slower: measured / predicted ms"], null);
  assertEquals(e2e.rows[1]["paper overhead %"], 0.11);
  assertEquals(e2e.rows[1].error, "fallback: RuntimeError: boom");
  assertEquals(e2e.rows[1]["tokens equal"], "– / 1");
  // CUDA graphs: a failed variant gets the error column; the others keep their figures.
  assertEquals(graphs.id, "apply_graphs_r1");
  assertEquals(graphs.columns.at(-1), "error");
  assertEquals(
    [graphs.rows[0]["overhead %"], graphs.rows[0]["slower ms"], graphs.rows[0].error],
    [0.3, 6.2, "project: RuntimeError: boom"],
  );
  // No paged row failed: no error column, and the row carries the measured speedup.
  assertEquals(paged.columns.includes("error"), false);
  assertEquals([paged.rows[0].batch, paged.rows[0].speedup], [16, 3]);
  // A run that measured only the dispatch has only its table.
  const only = applyTables("r2", ApplyMeasurements.parse({ dispatch: MEASURED.dispatch }));
  assertEquals(only.map((t) => t.id), ["apply_dispatch_r2"]);
});

Deno.test("apply section: one line on how to measure when no run has a measurement; each measured run on its own", () => {
  const none = renderApplySection([{ id: "a", gpu: "G", measurements: { stages: {} } }, {
    id: "b",
    gpu: null,
  }]);
  assertEquals(
    none,
    `<section id="apply"><h2>apply(): the kernels inside a model</h2>\n<p>${APPLY_HOW}</p>\n</section>`,
  );
  const html = renderApplySection([
    { id: "a", gpu: "G" },
    { id: "b", gpu: "G", measurements: { apply: MEASURED } },
  ]);
  assert(!html.includes(APPLY_HOW));
  assertEquals(html.match(/<h3 /g)?.length, 1);
  assertMatch(
    html,
    /<h3 id="apply-b">Run b: NVIDIA H100 80GB HBM3 \(torch 2\.11\.0\+cu130\)<\/h3>/,
  );
  assertMatch(html, /<p>Dispatch adds 701 ns per call/);
  assertEquals(html.match(/<table /g)?.length, 4);
  assertMatch(html, /<td>apply, hit \(solution = fallback\)<\/td><td class="num">760\.5<\/td>/);
});

Deno.test("apply section: a malformed measurements.apply is one line naming the run.json and field", () => {
  const bad = { ...MEASURED, e2e: [{ ...MEASURED.e2e[0], batch: "1" }] };
  const e = assertThrows(
    () => renderApplySection([{ id: "r", gpu: null, measurements: { apply: bad } }]),
    /^results\/r\/run\.json: \$\.measurements\.apply\.e2e\[0\]\.batch: Invalid input: expected number/,
  );
  assert(e instanceof RunFolderError);
});

Deno.test("the committed report's first screen carries the apply section of a shipped run", async () => {
  const root = mkdtempSync(join(tmpdir(), "report-apply-"));
  try {
    for (const p of ["claims.json", "data/paper-figures.json"]) {
      mkdirSync(join(root, p, ".."), { recursive: true });
      cpSync(join(ROOT, p), join(root, p));
    }
    writeFixtureRun(join(root, "results"), "fake-2026-01-01", {
      gpu: "FakeGPU",
      extra: { measurements: { apply: MEASURED } },
    });
    const out = join(root, "out");
    const r = await buildShippedReport({
      root,
      outDir: out,
      params: AggregateParams.parse({}),
      log: () => {},
    });
    const page = readFileSync(join(out, "index.html"), "utf8");
    assertMatch(
      page,
      /<h2>apply\(\): the kernels inside a model<\/h2>\n<h3 id="apply-fake-2026-01-01">/,
    );
    assert(page.indexOf('<section id="apply">') > page.indexOf('<section id="runs">'));
    assertEquals(r.claims.find((c) => c.id === "paper.apply.overhead")?.status, "PASS");
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("apply tables: the Triton variant and interleaved rounds get their columns and caption only where measured", () => {
  const measured = ApplyMeasurements.parse({
    ...MEASURED,
    e2e: [e2eSummaryRow({
      rounds: 5,
      fallback_overhead_iqr_pct: 1.5,
      triton_ms: 900,
      triton_speedup: 1.111,
      triton_tokens_equal: 0.95,
      triton_definitions: ["rmsnorm_h4096"],
    })],
    graphs: [{ dtype: "bfloat16", batch: 1, unpatched_ms: 2, fallback_ms: 2.01, triton_ms: 1.9 }],
  });
  const [, e2e, graphs] = applyTables("r3", measured);
  assertEquals(e2e.columns.slice(7, 10), ["project speedup", "triton ms", "triton speedup"]);
  assertEquals([e2e.rows[0]["triton ms"], e2e.rows[0]["triton speedup"]], [900, 1.111]);
  assertEquals(e2e.rows[0]["tokens equal"], "1 / 0.9688 / 0.95");
  assertMatch(e2e.caption, /median of 5 rounds, the variants interleaved/);
  assertMatch(e2e.caption, /triton: the same with the project's Triton kernels/);
  assert(graphs.columns.includes("triton ms"));
  assertEquals(graphs.rows[0]["triton ms"], 1.9);
  // Without them (files of before): no Triton column, the caption of blocks of 3.
  const [, before, beforeGraphs] = applyTables("r1", ApplyMeasurements.parse(MEASURED));
  assertEquals(before.columns.includes("triton ms"), false);
  assertEquals(beforeGraphs.columns.includes("triton ms"), false);
  assertMatch(before.caption, /median of 3\)/);
  assertEquals(beforeGraphs.columns.includes("predicted ms"), false);
});

Deno.test("apply: the replayed slower solution's slowdown and its prediction get columns and a sentence only where measured", () => {
  const a = ApplyMeasurements.parse({
    ...MEASURED,
    graph_additivity_max_dev_pct: 4.5,
    graphs: [{
      dtype: "bfloat16",
      batch: 1,
      unpatched_ms: 2,
      fallback_ms: 2.01,
      slow_ms: 4.1,
      slow_delta_ms: 2.09,
      slow_predicted_ms: 2,
      slow_vs_predicted: 1.045,
    }],
  });
  const [, , graphs] = applyTables("r4", a);
  assertEquals(
    [graphs.rows[0]["slower − fallback ms"], graphs.rows[0]["predicted ms"]],
    [2.09, 2],
  );
  assertMatch(graphs.caption, /predicted/);
  assertMatch(
    applyFindings(a),
    /replayed as CUDA graphs, a deliberately slower solution slows the forward by within 4\.5 % of the sum over its calls/,
  );
  assertEquals(
    /replayed as CUDA graphs, a deliberately/.test(
      applyFindings(ApplyMeasurements.parse(MEASURED)),
    ),
    false,
  );
});
