import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CellPlan, PlanContext } from "../../pipeline/engine/mod.ts";
import { encodeSafetensors, loadTraceSet, readSweepIndex } from "../../pipeline/trace/mod.ts";
import { findPython } from "../../pipeline/lib/mod.ts";
import { createGenerateStage, GenerateParams } from "./stage.ts";
import { RMS_TRITON } from "./testdata/manifests.ts";
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

/** A corpus solution file's content: a Python solution of `def` with `src` as its k.py. */
const pythonSolution = (name: string, def: string, src: string, author: string) => ({
  name,
  definition: def,
  author,
  spec: {
    language: "python",
    target_hardware: ["H100"],
    entry_point: "k.py::run",
    dependencies: [],
    destination_passing_style: true,
    binding: null,
  },
  sources: [{ path: "k.py", content: src }],
});

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

Deno.test("rejected corpus solutions: written to rejected/ with a COMPILE_ERROR trace, counted on the console", async () => {
  // A corpus of three solutions: one valid, one whose signature misses an input, one of a definition
  // without workloads in the run. The run's first rmsnorm_h2048 workload reads a blob from its extract cell.
  const corpus = mkdtempSync(join(tmpdir(), "tp-corpus-"));
  const extract = mkdtempSync(join(tmpdir(), "tp-extract-"));
  const sol = (name: string, def: string, src: string) => pythonSolution(name, def, src, "dave");
  const put = (op: string, s: ReturnType<typeof sol>) => {
    const dir = join(corpus, "solutions", "dave", op, s.definition);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `${s.name}.json`), JSON.stringify(s));
  };
  put(
    "rmsnorm",
    sol("dave_ok", "rmsnorm_h2048", "def run(hidden_states, weight, output):\n    pass\n"),
  );
  put("rmsnorm", sol("dave_bad", "rmsnorm_h2048", "def run(hidden_states, output):\n    pass\n"));
  put("gemm", sol("dave_gemm", "gemm_n128_k2048", "def other(A, B, C):\n    pass\n"));
  const blob = "blob/workloads/rmsnorm/rmsnorm_h2048/w0.safetensors";
  mkdirSync(join(extract, "blob/workloads/rmsnorm/rmsnorm_h2048"), { recursive: true });
  writeFileSync(
    join(extract, blob),
    encodeSafetensors({
      weight: { dtype: "BF16", shape: [2048], data: new Uint8Array(4096) },
    }),
  );
  // An extract cell is a self-contained fragment: its definitions come with its workloads.
  mkdirSync(join(extract, "definitions/rmsnorm"), { recursive: true });
  cpSync(
    join(root, "stages/generate/testdata/run/definitions/rmsnorm/rmsnorm_h2048.json"),
    join(extract, "definitions/rmsnorm/rmsnorm_h2048.json"),
  );
  mkdirSync(join(extract, "workloads/rmsnorm"), { recursive: true });
  writeFileSync(
    join(extract, "workloads/rmsnorm/rmsnorm_h2048.jsonl"),
    JSON.stringify({
      definition: "rmsnorm_h2048",
      solution: null,
      workload: {
        uuid: "w0",
        axes: { batch_size: 2 },
        inputs: {
          hidden_states: { type: "random" },
          weight: { type: "safetensors", path: blob, tensor_key: "weight" },
        },
      },
      evaluation: null,
    }) + "\n",
  );
  const ctx = ctxFor({ corpus: [corpus], kernels: { roots: [] } });
  ctx.upstream.extract = [{ id: "m", key: "k", digest: "d2", dir: extract, summary: null }];
  const console: string[] = [];
  ctx.log = (m) => console.push(m);
  const [plan] = await createGenerateStage().plan(ctx);
  const { outDir, summary } = await runCell(plan, ctx);
  // What the judging stages read: the accepted solution only.
  assertEquals([...loadTraceSet(outDir).set.solutions.keys()], ["dave_ok"]);
  // rejected/: both rejected solutions; a trace for the one whose definition has a workload.
  const rej = loadTraceSet(join(outDir, "rejected"), { checkBlobs: true });
  assertEquals(rej.diagnostics, []);
  assertEquals([...rej.set.solutions.keys()].sort(), ["dave_bad", "dave_gemm"]);
  assertEquals(rej.set.traces.length, 1);
  const ev = rej.set.traces[0].evaluation!;
  assertEquals([rej.set.traces[0].solution, rej.set.traces[0].workload.uuid, ev.status], [
    "dave_bad",
    "w0",
    "COMPILE_ERROR",
  ]);
  assertMatch(ev.log, /^error: rejected by generate: .*dave_bad\.json .*def run takes at most 2/);
  assertEquals([ev.correctness ?? null, ev.performance ?? null], [null, null]);
  const report = JSON.parse(readFileSync(join(outDir, "generate-report.json"), "utf8"));
  assertEquals(
    report.rejected.map((r: { solution: string; trace: boolean }) => [r.solution, r.trace]),
    [["dave_gemm", false], ["dave_bad", true]],
  );
  assertEquals((summary as { rejected: string[] }).rejected, ["dave_gemm", "dave_bad"]);
  // The console hears of it: the count and the first reasons.
  const line = console.find((m) => m.includes("rejected"));
  assertMatch(line, /: 2 solutions rejected \(1 written to rejected\/ with a COMPILE_ERROR trace/);
  assertMatch(line, /dave_gemm\.json: \$\.spec\.entry_point: entry symbol "run" is not defined/);
});

Deno.test("a rejected Python solution that does not parse is explained by Python's parser, with its line", async () => {
  const python = await findPython();
  if (!python) {
    console.log("skipped: no python3 here to parse the solution");
    return;
  }
  const corpus = mkdtempSync(join(tmpdir(), "tp-corpus-"));
  const dir = join(corpus, "solutions", "eve", "gemm", "gemm_n128_k2048");
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "eve_broken.json"),
    JSON.stringify(
      pythonSolution(
        "eve_broken",
        "gemm_n128_k2048",
        "import torch\n\ndef run(A, B, C)\n    pass\n",
        "eve",
      ),
    ),
  );
  const ctx = ctxFor({ corpus: [corpus], kernels: { roots: [] } });
  ctx.toolchain = { ...ctx.toolchain, python: { path: python, version: "test", digest: "x" } };
  const [plan] = await createGenerateStage().plan(ctx);
  assertEquals((plan.toolchain as { pythonSyntax: string }).pythonSyntax, "test");
  const { outDir } = await runCell(plan, ctx);
  const report = JSON.parse(readFileSync(join(outDir, "generate-report.json"), "utf8"));
  const reasons: string[] = report.rejected[0].reasons;
  assertMatch(reasons[0], /k\.py does not parse: .*line 3/);
  assertEquals(report.counts.solutions, 0);
  assertEquals([...loadTraceSet(outDir).set.solutions.keys()], []);
  assert(!reasons.some((r) => /is not defined/.test(r)), reasons.join("; "));
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
    JSON.stringify(RMS_TRITON),
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
