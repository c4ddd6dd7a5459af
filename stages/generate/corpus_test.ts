import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTraceSet } from "../../pipeline/trace/mod.ts";
import { importCorpus, type RunContext } from "./corpus.ts";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";

const root = new URL("../..", import.meta.url).pathname;
function runContext(): RunContext {
  const { set } = loadTraceSet(join(root, "stages/generate/testdata/run"));
  return {
    definitions: set.definitions,
    workloadUuids: new Map(
      [...set.workloads].map(([n, ws]) => [n, new Set(ws.map((w) => w.uuid))]),
    ),
  };
}

Deno.test("pr221-gpt-5: definitions resolved from the run, all 18 solutions kept with authors", () => {
  const r = importCorpus(join(root, "data/corpus/pr221-gpt-5"), runContext(), "pr221");
  assertEquals(r.counts.solutions, 18);
  assertEquals(r.counts.rejectedSolutions, 0);
  assertEquals(r.counts.foreignTraces, 54);
  assertEquals(r.format, "current");
  assert(
    [...r.set.solutions.values()].every((s) => s.author === "gpt-5" && s.spec.language === "cuda"),
  );
  assert(r.set.definitions.has("gqa_ragged_prefill_causal_h32_kv8_d128"));
  assertEquals(r.diagnostics.filter((d) => d.level === "error"), []);
});

Deno.test("fib-example-ffi: workloads the run already has are skipped", () => {
  const r = importCorpus(join(root, "data/corpus/fib-example-ffi"), runContext(), "ffi");
  assertEquals(r.counts.solutions, 1);
  assertEquals(r.counts.workloads + r.counts.skippedWorkloads, 43);
  assertEquals(r.counts.skippedWorkloads, 2); // the 2 testdata/run workloads with the same uuids
});

Deno.test("xslingcn draft: upgraded, with each unusable file reported", () => {
  const r = importCorpus(
    join(root, "data/corpus/xslingcn-flashinfer-trace-2025-08"),
    runContext(),
    "xs",
  );
  assertEquals(r.format, "2025-08-draft");
  const gemm = r.set.definitions.get("gemm_n_4096_k_4096");
  assert(gemm);
  assertEquals(gemm.op_type, "gemm");
  assertMatch(gemm.reference, /return C$/m);
  const tri = r.set.solutions.get("triton_gpt_o3_gemm_n_4096_k_4096");
  assert(tri);
  assertEquals([tri.spec.language, tri.spec.destination_passing_style], ["triton", false]);
  assertEquals(r.set.workloads.get("gemm_n_4096_k_4096")?.length, 43);
  const errs = r.diagnostics.filter((d) => d.level === "error");
  assertEquals(errs.length, 3);
  assertMatch(
    errs.find((d) => d.file.includes("batch_gqa_ragged"))?.message,
    /entry_point "run".*rejects/,
  );
  assertMatch(
    errs.find((d) => d.file.includes("flashinfer_mla"))?.message,
    /neither in this corpus nor in the run/,
  );
  assertMatch(errs.find((d) => d.file.includes("mla_paged_decode_h128"))?.message, /51 workload/);
  // Same-name definitions that differ from the run's are not imported: the run's wins.
  assertEquals(
    r.set.definitions.get("gqa_paged_decode_h32_kv8_d128_ps1"),
    runContext().definitions.get("gqa_paged_decode_h32_kv8_d128_ps1"),
  );
});

Deno.test("a signature mismatch rejects that solution only, naming the file", () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-corpus-"));
  const put = (rel: string, v: unknown) => {
    mkdirSync(join(dir, rel, ".."), { recursive: true });
    writeFileSync(join(dir, rel), JSON.stringify(v));
  };
  const spec = {
    language: "python",
    target_hardware: ["H100"],
    entry_point: "main.py::run",
    destination_passing_style: false,
  };
  put("solutions/me/rmsnorm/rmsnorm_h128/good.json", {
    name: "good",
    definition: "rmsnorm_h128",
    author: "me",
    spec,
    sources: [{
      path: "main.py",
      content: "def run(hidden_states, weight):\n    return hidden_states\n",
    }],
  });
  put("solutions/me/rmsnorm/rmsnorm_h128/bad.json", {
    name: "bad",
    definition: "rmsnorm_h128",
    author: "me",
    spec,
    sources: [{ path: "main.py", content: "def run(hidden_states):\n    return hidden_states\n" }],
  });
  writeFileSync(join(dir, "solutions/me/rmsnorm/rmsnorm_h128/broken.json"), "{ not json");
  const r = importCorpus(dir, runContext(), "mine");
  assertEquals([...r.set.solutions.keys()], ["good"]);
  const errs = r.diagnostics.filter((d) => d.level === "error");
  assertEquals(errs.length, 2);
  assertMatch(
    errs.find((d) => d.file === "mine/solutions/me/rmsnorm/rmsnorm_h128/bad.json")?.message,
    /at most 1 positional.*passes 2/,
  );
  assertMatch(errs.find((d) => d.file.endsWith("broken.json"))?.message, /malformed JSON/);
});

Deno.test("a missing corpus directory is one clear error", () => {
  const r = importCorpus("/nonexistent/corpus", runContext(), "/nonexistent/corpus");
  assertEquals(r.diagnostics.map((d) => d.message), ["corpus directory does not exist"]);
});
