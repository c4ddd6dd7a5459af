import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, sha256File } from "../../pipeline/engine/mod.ts";
import { DuckDBInstance } from "@duckdb/node-api";
import {
  deriveShape,
  EngineConfig,
  EngineConfigError,
  KNOWN_TRACES,
  kvCapacityPages,
  loadModelConfig,
  loadTrace,
  ModelConfigError,
  parseAzureCsv,
  parseMooncakeJsonl,
  simulate,
  TraceError,
} from "../../pipeline/serving/mod.ts";
import { CollectParams, collectStage } from "./stage.ts";

const MC = join(REPO_ROOT, "data/models/model-configs.json");
const llama = () =>
  deriveShape("meta-llama/Llama-3.1-8B", loadModelConfig(MC, "meta-llama/Llama-3.1-8B"), {
    tp: 1,
    ep: 1,
  }, 1);
const conv = (limit: number) =>
  loadTrace(join(REPO_ROOT, KNOWN_TRACES["azure-conv"].path), "azure-csv", { limit });

Deno.test("bad trace rows fail with file and line", () => {
  assert(
    assertThrows(() =>
      parseAzureCsv(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,12,-3\n",
        "t.csv",
      ), /t\.csv:2:\ column\ GeneratedTokens:\ negative/) instanceof TraceError,
  );
  assert(
    assertThrows(
      () => parseAzureCsv("TIMESTAMP,ContextTokens\n", "t.csv"),
      /t\.csv:1:\ missing\ column\ GeneratedTokens/,
    ) instanceof TraceError,
  );
  assert(
    assertThrows(() =>
      parseAzureCsv(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,x,3\n",
        "t.csv",
      ), /t\.csv:2:\ column\ ContextTokens/) instanceof TraceError,
  );
  assert(
    assertThrows(() =>
      parseMooncakeJsonl(
        '{"timestamp":0,"input_length":5,"output_length":1,"hash_ids":[0]}\n{oops\n',
        "m.jsonl",
      ), /m\.jsonl:2:\ malformed\ JSON/) instanceof TraceError,
  );
});

Deno.test("model config errors name the model and field; engine that cannot fit names the memory", () => {
  assert(
    assertThrows(
      () => loadModelConfig(MC, "no/such-model"),
      /unknown model "no\/such-model"/,
    ) instanceof
      ModelConfigError,
  );
  const dir = mkdtempSync("/tmp/tp-mc-");
  const doc = JSON.parse(readFileSync(MC, "utf8"));
  delete doc.models["meta-llama/Llama-3.1-8B"].hidden_size;
  Deno.writeTextFileSync(join(dir, "m.json"), JSON.stringify(doc));
  assert(
    assertThrows(
      () => loadModelConfig(join(dir, "m.json"), "meta-llama/Llama-3.1-8B"),
      /hidden_size/,
    ) instanceof
      ModelConfigError,
  );
  const ds = deriveShape(
    "deepseek-ai/DeepSeek-V3",
    loadModelConfig(MC, "deepseek-ai/DeepSeek-V3"),
    { tp: 8, ep: 8 },
    1,
  );
  assert(
    assertThrows(
      () => kvCapacityPages(ds, EngineConfig.parse({ gpuMemoryGB: 80 })),
      /gpuMemoryGB=80/,
    ) instanceof
      EngineConfigError,
  );
  assert(kvCapacityPages(ds, EngineConfig.parse({ gpuMemoryGB: 141 })) > 100_000);
});

Deno.test("Llama-3.1-8B TP1 shapes match the dataset's GEMM definitions", () => {
  const s = llama();
  const g = s.plan.filter((p) => p.opType === "gemm").map((p) =>
    `${p.site}:n${p.consts.N}_k${p.consts.K}`
  );
  assertEquals(g, [
    "attn.qkv_proj:n6144_k4096",
    "attn.o_proj:n4096_k4096",
    "mlp.gate_up_proj:n28672_k4096",
    "mlp.down_proj:n4096_k14336",
    "lm_head:n128256_k4096",
  ]);
  assert(Math.abs(s.weightBytes / 1e9 - 16.06) < 0.1);
});

Deno.test("attention sites: paged decode, paged prefill on the page size, ragged prefill (GQA, MLA)", () => {
  const attention = (s: ReturnType<typeof llama>) =>
    s.plan.filter((p) => /_(paged|ragged)$/.test(p.opType)).map((
      p,
    ) => [p.site, p.opType, p.when, p.consts.page_size ?? null]);
  assertEquals(attention(llama()), [
    ["attn.gqa_decode", "gqa_paged", "decode", 1],
    ["attn.gqa_prefill_paged", "gqa_paged", "extend_paged", 1],
    ["attn.gqa_prefill_ragged", "gqa_ragged", "extend_ragged", null],
  ]);
  const ds = deriveShape(
    "deepseek-ai/DeepSeek-V3",
    loadModelConfig(MC, "deepseek-ai/DeepSeek-V3"),
    { tp: 8, ep: 8 },
    16,
  );
  assertEquals(attention(ds), [
    ["attn.mla_decode", "mla_paged", "decode", 16],
    ["attn.mla_prefill_paged", "mla_paged", "extend_paged", 16],
    ["attn.mla_prefill_ragged", "mla_ragged", "extend_ragged", null],
  ]);
});

Deno.test("simulator invariants: tokens, batch limit, KV capacity", () => {
  const reqs = conv(400);
  const m = llama();
  // Tight engine: small pool and batch limit, so chunking, queueing and retraction all happen.
  // newTokenRatio 0 reserves nothing for decode growth, so a full pool must retract.
  const eng = EngineConfig.parse({
    maxRunningRequests: 8,
    chunkedPrefillSize: 1024,
    maxPrefillTokens: 1024,
    newTokenRatio: 0,
  });
  const pool = 8_000;
  const r = simulate(reqs, m, eng, pool, { seed: 0, expertSkew: 0.5, blockTokens: 512 });
  const ok = r.requests.filter((x) => !x.rejected);
  for (const q of r.requests) {
    assertEquals(q.rejected, q.prompt + q.output > pool, `request ${q.id} rejection`);
  }
  for (const q of ok) {
    assertEquals(q.generated, q.output, `request ${q.id} generated`);
    if (q.retractions === 0) {
      assertEquals(q.extendTokens + q.hitTokens + q.decodeSteps, q.prompt + q.output - 1);
    }
  }
  const it = r.iterations;
  const processed = it.tokens.reduce((a, b) => a + b, 0);
  assertEquals(processed, ok.reduce((a, q) => a + q.extendTokens + q.decodeSteps, 0));
  for (let i = 0; i < it.iter.length; i++) {
    if (it.decode[i]) assert(it.batch[i] <= 8, `decode batch ${it.batch[i]} > max running`);
    assert(it.usedPages[i] <= pool);
  }
  assert(r.peakUsedPages <= pool);
  assert(ok.some((q) => q.retractions > 0), "the tight pool should force a retraction");
  // Ample memory: no retraction, and processed tokens equal prompt + output - 1 per request exactly.
  const r2 = simulate(reqs, m, EngineConfig.parse({}), 400_000, {
    seed: 0,
    expertSkew: 0.5,
    blockTokens: 512,
  });
  const p2 = r2.iterations.tokens.reduce((a, b) => a + b, 0);
  assertEquals(p2, reqs.reduce((a, q) => a + q.prompt + q.output - 1, 0));
});

Deno.test("prefix reuse from Mooncake hash_ids reduces processed tokens by exactly the hits", () => {
  const lines = [
    { timestamp: 0, input_length: 1100, output_length: 3, hash_ids: [1, 2, 3] },
    { timestamp: 1000, input_length: 1200, output_length: 2, hash_ids: [1, 2, 4] },
  ].map((o) => JSON.stringify(o)).join("\n");
  const reqs = parseMooncakeJsonl(lines, "m.jsonl");
  const r = simulate(reqs, llama(), EngineConfig.parse({}), 100_000, {
    seed: 0,
    expertSkew: 0,
    blockTokens: 512,
  });
  assertEquals(r.requests[1].hitTokens, 1024);
  const processed = r.iterations.tokens.reduce((a, b) => a + b, 0);
  assertEquals(processed, 1100 + 3 - 1 + 1200 + 2 - 1 - 1024);
  assertEquals(r.iterations.hasPrefix.some((x) => x === 1), true);
});

/** Plans the collect stage for one trace × model × engine and runs its single cell. */
async function runCollectCell(params: CollectParams) {
  const ctx = {
    params,
    root: REPO_ROOT,
    upstream: {},
    toolchain: {} as never,
    env: {},
    log: () => {},
  };
  const [cell] = await collectStage.plan(ctx);
  const outDir = mkdtempSync("/tmp/tp-collect-");
  let summary: Record<string, number> = {};
  await collectStage.run!({
    plan: cell,
    key: "k",
    outDir,
    log: () => {},
    setSummary: (s) => (summary = s as never),
    signal: new AbortController().signal,
  }, ctx);
  return { outDir, summary };
}

Deno.test("collect writes Parquet deterministically (equal digests on two runs)", async () => {
  const params = CollectParams.parse({
    traces: [{ name: "azure-conv", limit: 150 }],
    models: [{ name: "Qwen/Qwen3-30B-A3B" }],
  });
  const digests: string[] = [];
  for (let k = 0; k < 2; k++) {
    const { outDir, summary } = await runCollectCell(params);
    assert(summary.events > summary.iterations);
    digests.push(
      ["events.parquet", "iterations.parquet", "requests.parquet", "sites.parquet"].map((f) =>
        sha256File(join(outDir, f))
      ).join(),
    );
  }
  assertEquals(digests[0], digests[1]);
});

Deno.test("no call is emitted with zero rows: an extend step where no sequence samples has no sampling call", async () => {
  const params = CollectParams.parse({
    traces: [{ name: "azure-conv", limit: 150 }],
    models: [{ name: "meta-llama/Llama-3.1-8B" }],
    // Small chunks: long prompts take several extend steps, most of which finish no sequence.
    engines: [{ name: "small-chunks", chunkedPrefillSize: 256 }],
  });
  const { outDir } = await runCollectCell(params);
  const db = await DuckDBInstance.create(":memory:");
  const con = await db.connect();
  const count = async (sql: string) => Number((await con.runAndReadAll(sql)).getRows()[0][0]);
  const f = (name: string) => `'${join(outDir, name)}'`;
  // The trace has such steps (chunked prefill that finishes no sequence), so the check can fail.
  const silentSteps = await count(
    `SELECT count(*) FROM ${f("iterations.parquet")} WHERE seqs = 0 AND tokens > 0`,
  );
  assert(silentSteps > 0, "the trace has iterations in which no sequence samples");
  assertEquals(await count(`SELECT count(*) FROM ${f("events.parquet")} WHERE m <= 0`), 0);
  const sampling = await count(
    `SELECT count(*) FROM ${f("events.parquet")} e JOIN ${f("sites.parquet")} s USING (site_idx)
     WHERE s.op_type = 'sampling'`,
  );
  assert(sampling > 0, "sampling calls are still emitted where sequences sample");
  con.closeSync();
  db.closeSync();
});
