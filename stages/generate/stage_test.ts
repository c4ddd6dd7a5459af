import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CellPlan, PlanContext } from "../../pipeline/engine/mod.ts";
import { loadTraceSet, readSweepIndex } from "../../pipeline/trace/mod.ts";
import { createGenerateStage, GenerateParams } from "./stage.ts";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";

const root = new URL("../..", import.meta.url).pathname;

function ctxFor(params: unknown, repo = root): PlanContext<GenerateParams> {
  return {
    params: GenerateParams.parse(params),
    root: repo,
    upstream: {
      definitions: [{
        id: "all",
        key: "k",
        digest: "d1",
        dir: join(root, "stages/generate/testdata/run"),
        summary: null,
      }],
    },
    toolchain: { os: "linux", arch: "x86_64", deno: "x", gpus: [] },
    env: {},
    log: () => {},
  };
}
async function runCell(plan: CellPlan, ctx: PlanContext<GenerateParams>) {
  const outDir = mkdtempSync(join(tmpdir(), "tp-gen-"));
  let summary: unknown = null;
  await createGenerateStage().run!({
    plan,
    key: "k",
    outDir,
    log: () => {},
    setSummary: (s) => (summary = s),
    signal: new AbortController().signal,
  }, ctx);
  return { outDir, summary };
}

Deno.test("defaults: the three committed corpora, kernel roots, no LLM campaign", async () => {
  const p = GenerateParams.parse({});
  assertEquals(p.corpus.length, 3);
  assertEquals([p.kernels.mode, p.llm.rounds, p.llm.campaigns.length, p.llm.mode], [
    "grid",
    10,
    0,
    "auto",
  ]);
  const plans = await createGenerateStage().plan(ctxFor({ kernels: { roots: [] } }));
  assertEquals(plans.map((c) => c.id), [
    "corpus/pr221-gpt-5",
    "corpus/fib-example-ffi",
    "corpus/xslingcn-flashinfer-trace-2025-08",
  ]);
});

Deno.test("corpus cells write fragments that load without diagnostics, with a report", async () => {
  const ctx = ctxFor({
    corpus: ["data/corpus/xslingcn-flashinfer-trace-2025-08", "data/corpus/pr221-gpt-5"],
    kernels: { roots: [] },
  });
  const plans = await createGenerateStage().plan(ctx);
  const keyBefore = plans[0].inputs.corpus;
  for (const plan of plans) {
    const { outDir, summary } = await runCell(plan, ctx);
    const { set, diagnostics } = loadTraceSet(outDir, { checkBlobs: true });
    assertEquals(diagnostics, []);
    const report = JSON.parse(readFileSync(join(outDir, "generate-report.json"), "utf8"));
    if (plan.id.includes("xslingcn")) {
      assertEquals(set.solutions.size, 6);
      assertEquals(report.format, "2025-08-draft");
      assertEquals(
        report.diagnostics.filter((d: { level: string }) => d.level === "error").length,
        3,
      );
    } else {
      assertEquals(set.solutions.size, 18);
      assertEquals((summary as { counts: { solutions: number } }).counts.solutions, 18);
    }
  }
  // The corpus digest is a function of its files.
  assertEquals((await createGenerateStage().plan(ctx))[0].inputs.corpus, keyBefore);
  const missing = await createGenerateStage().plan(
    ctxFor({ corpus: ["no/such/dir"], kernels: { roots: [] } }),
  );
  assertMatch(missing[0].notRunnable, /no\/such\/dir does not exist/);
});

Deno.test("sweep cells: one per manifest; bad manifests are not runnable with the reason", async () => {
  const repo = mkdtempSync(join(tmpdir(), "tp-repo-"));
  const k = join(repo, "triton", "rms");
  mkdirSync(k, { recursive: true });
  writeFileSync(
    join(k, "main.py"),
    "from .tp_params import BLOCK\n\ndef run(hidden_states, weight):\n    return hidden_states\n",
  );
  writeFileSync(
    join(k, "kernel.json"),
    JSON.stringify({
      name: "rms_triton",
      author: "tracepipe",
      op_type: "rmsnorm",
      definition_regex: "rmsnorm_h\\d+",
      spec: {
        language: "triton",
        target_hardware: ["H100"],
        entry_point: "main.py::run",
        destination_passing_style: false,
      },
      sources: ["main.py"],
      params_file: "tp_params.py",
      params: { BLOCK: [64, 128] },
    }),
  );
  mkdirSync(join(repo, "cuda", "broken"), { recursive: true });
  writeFileSync(join(repo, "cuda", "broken", "kernel.json"), "{}");
  const ctx = ctxFor({ corpus: [], kernels: { roots: ["cuda", "triton"] } }, repo);
  const plans = await createGenerateStage().plan(ctx);
  assertEquals(plans.map((p) => p.id), ["sweep/cuda-broken", "sweep/triton-rms"]);
  assertMatch(plans[0].notRunnable, /cuda\/broken\/kernel.json: \$\.name/);
  const { outDir, summary } = await runCell(plans[1], ctx);
  const { set, diagnostics } = loadTraceSet(outDir);
  assertEquals(diagnostics, []);
  assertEquals(set.solutions.size, 6); // rmsnorm_h128, h2048, h4096 (fused_add does not match) × 2 points
  assertEquals(readSweepIndex(outDir).length, 6);
  assertEquals((summary as { sweep: unknown[] }).sweep.length, 6);
});

Deno.test("llm cells: key holds model and sampling but never the endpoint or key; no workload → not runnable", async () => {
  const env = (n: string) =>
    ({
      TRACEPIPE_LLM_MODEL: "env-model",
      TRACEPIPE_LLM_API_KEY: "sk-SECRET",
      TRACEPIPE_LLM_BASE_URL: "http://x",
    } as Record<string, string>)[n];
  const stage = createGenerateStage({ env });
  const ctx = ctxFor({
    corpus: [],
    kernels: { roots: [] },
    llm: { campaigns: [{ definition: "rmsnorm_h(128|2048)", language: "triton" }] },
  });
  const plans = await stage.plan(ctx);
  assertEquals(plans.map((p) => p.id), [
    "llm/env-model/triton/rmsnorm_h128",
    "llm/env-model/triton/rmsnorm_h2048",
  ]);
  assert(
    !JSON.stringify(plans).includes("sk-SECRET") && !JSON.stringify(plans).includes("http://x"),
  );
  assertEquals((plans[0].params as { model: string }).model, "env-model");
  assertEquals(plans[0].notRunnable, undefined);
  assertMatch(plans[1].notRunnable, /no workload for definition rmsnorm_h2048/);
  const noModel = await createGenerateStage({ env: () => undefined }).plan(ctx);
  assertMatch(noModel[0].notRunnable, /no model/);
});
