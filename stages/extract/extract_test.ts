import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type CellResult, sha256File } from "../../pipeline/engine/mod.ts";
import {
  blobPath,
  checkConstraints,
  checkWorkload,
  type Definition,
  encodeSafetensors,
  evaluate,
  formatDefinition,
  intTensor,
  listFiles,
  loadTraceSet,
  type Workload,
  workloadsPath,
} from "../../pipeline/trace/mod.ts";
import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { CollectParams, collectStage } from "../collect/mod.ts";
import { repairOfficial } from "./repair.ts";
import { extractDumps, extractModel, ExtractParams, extractStage } from "./stage.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const DEFS = [...loadTraceSet(join(ROOT, "data")).set.definitions.values()];
const def = (n: string) => DEFS.find((d) => d.name === n)!;

Deno.test("constraint evaluator: dataset expressions, failures and unsupported syntax", () => {
  const env = {
    batch_size: 3,
    len_indptr: 4,
    kv_indptr: { shape: [4], data: [0, 2, 5, 9] },
    num_kv_indices: 9,
    intermediate_size: 768,
    gemm1_weights: { shape: [128, 1536, 2048] },
  };
  assertEquals(evaluate("len_indptr == batch_size + 1", env), true);
  assertEquals(evaluate("num_kv_indices == kv_indptr[-1].item()", env), true);
  assertEquals(evaluate("gemm1_weights.shape[1] == 2 * intermediate_size", env), true);
  assertEquals(evaluate("batch_size % 2 == 0 or not (batch_size >= 4)", env), true);
  assertEquals(evaluate("1 < batch_size < 3", env), false);
  const d = {
    ...def("gqa_paged_decode_h32_kv8_d128_ps1"),
    constraints: [
      "len_indptr == batch_size + 1",
      "foo(batch_size) == 1",
      "kv_indptr[-1].item() == 8",
    ],
  } as Definition;
  const r = checkConstraints(d, env);
  assertEquals(r.map((x) => x.status), ["pass", "unsupported", "fail"]);
  const random = checkConstraints(d, { ...env, kv_indptr: { shape: [4] } });
  assertEquals(random[2].status, "unsupported");
});

Deno.test("checkWorkload catches out-of-range indices and a wrong kv_indptr", () => {
  const root = mkdtempSync("/tmp/tp-chk-");
  const d = def("gqa_paged_decode_h32_kv8_d128_ps1");
  const blob = "blob/x.safetensors";
  mkdirSync(join(root, "blob"));
  Deno.writeFileSync(
    join(root, blob),
    encodeSafetensors({
      kv_indptr: intTensor("I32", [0, 2, 4]),
      kv_indices: intTensor("I32", [0, 1, 2, 7]),
    }),
  );
  const w: Workload = {
    uuid: "u",
    axes: { batch_size: 2, len_indptr: 3, num_kv_indices: 4, num_pages: 5 },
    inputs: {
      q: { type: "random" },
      k_cache: { type: "random" },
      v_cache: { type: "random" },
      kv_indptr: { type: "safetensors", path: blob, tensor_key: "kv_indptr" },
      kv_indices: { type: "safetensors", path: blob, tensor_key: "kv_indices" },
      sm_scale: { type: "scalar", value: 0.088 },
    },
  };
  const c = checkWorkload(d, w, root);
  assert(
    c.problems.some((p) => p.includes("kv_indices[3] = 7 outside [0, 5)")),
    c.problems.join("; "),
  );
  const c2 = checkWorkload(d, {
    ...w,
    axes: { ...w.axes, num_pages: 8, num_kv_indices: 4, batch_size: 3 },
  }, root);
  assert(
    c2.problems.some((p) => p.includes("len_indptr == batch_size + 1")),
    c2.problems.join("; "),
  );
});

Deno.test("repair makes the official workloads runnable: blobs exist at original paths and pass", () => {
  const out = mkdtempSync("/tmp/tp-repair-");
  const r = repairOfficial(join(ROOT, "data"), DEFS, out, 0);
  assertEquals(r.workloads, 663);
  // Two official workloads declare num_pages = 0 with page indices: no blob can satisfy them.
  assertEquals(r.unrepairable.length, 2, r.unrepairable.join("\n"));
  let refs = 0;
  for (const f of listFiles(join(out, "workloads"), ".jsonl")) {
    for (const line of readFileSync(f, "utf8").split("\n").filter(Boolean)) {
      for (
        const inp of Object.values(JSON.parse(line).workload.inputs) as Array<
          { type: string; path?: string }
        >
      ) {
        if (inp.type === "safetensors") {
          refs++;
          assert(sha256File(join(out, inp.path!)).length === 64);
        }
      }
    }
  }
  assert(refs > 600);
  const orig = readFileSync(
    join(
      ROOT,
      "data/workloads/moe/moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048.jsonl",
    ),
  );
  assertEquals(
    readFileSync(
      join(out, "workloads/moe/moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048.jsonl"),
    ),
    orig,
  );
});

async function collectCells(
  model: string,
  tp: number,
  ep: number,
  gpu?: number,
  dumps: string[] = [],
): Promise<CellResult[]> {
  return await runCollect(CollectParams.parse({
    traces: [{ name: "azure-conv", limit: 300 }],
    models: [{ name: model, tp, ep, gpuMemoryGB: gpu }],
    dumps,
  }));
}

/** Plans and runs every collect cell of these params, each into a temporary folder. */
async function runCollect(params: CollectParams): Promise<CellResult[]> {
  const ctx = { params, root: ROOT, upstream: {}, toolchain: {} as never, env: {}, log: () => {} };
  const out: CellResult[] = [];
  for (const plan of await collectStage.plan(ctx)) {
    const dir = mkdtempSync("/tmp/tp-col-");
    let summary: unknown;
    await collectStage.run!({
      plan,
      key: "k",
      outDir: dir,
      log: () => {},
      setSummary: (s) => (summary = s),
      signal: new AbortController().signal,
    }, ctx);
    out.push({ id: plan.id, key: "k", digest: "d", dir, summary });
  }
  return out;
}

Deno.test("extract: valid workloads for every family a model uses, byte-identical on re-run", async () => {
  const cells = await collectCells("deepseek-ai/DeepSeek-V3", 8, 8, 141);
  const digests: string[] = [];
  for (let k = 0; k < 2; k++) {
    const out = mkdtempSync("/tmp/tp-ext-");
    const s = await extractModel(ROOT, cells, DEFS, out, {
      sampleSize: 12,
      seed: 0,
      timeWeight: 0.5,
    }, () => {});
    const fams = new Set(s.definitions.map((d) => d.family));
    for (
      const f of [
        "gemm",
        "rmsnorm",
        "fused_add_rmsnorm",
        "mla_paged_decode",
        "mla_ragged_prefill",
        "moe",
        "sampling",
      ]
    ) assert(fams.has(f as never), `missing family ${f}`);
    assert(
      s.missing.some((m) => m.name === "gemm_n7168_k2048"),
      "o_proj shape is reported as a needed definition",
    );
    // Re-check every written workload independently of extract.
    for (const f of listFiles(join(out, "workloads"), ".jsonl")) {
      for (const line of readFileSync(f, "utf8").split("\n").filter(Boolean)) {
        const t = JSON.parse(line);
        const c = checkWorkload(def(t.definition), t.workload, out);
        assertEquals(c.problems, [], `${t.definition} ${t.workload.uuid}`);
      }
    }
    digests.push(
      listFiles(out, "").map((f) => `${f.slice(out.length)}:${sha256File(f)}`).join("\n"),
    );
  }
  assertEquals(digests[0], digests[1]);
});

/** An engine dump as a TraceSet folder: one decode request of 3 tokens in pages 2, 0, 1 of a 4-page cache. */
function writeDump(): { dump: string; d: Definition; w: Workload } {
  const dump = mkdtempSync("/tmp/tp-dump-");
  const d = def("gqa_paged_decode_h32_kv8_d128_ps1");
  mkdirSync(join(dump, "definitions", d.op_type), { recursive: true });
  writeFileSync(join(dump, "definitions", d.op_type, `${d.name}.json`), formatDefinition(d));
  const blob = blobPath(d.op_type, d.name, "dumped-1");
  mkdirSync(join(dump, blob, ".."), { recursive: true });
  writeFileSync(
    join(dump, blob),
    encodeSafetensors({
      kv_indptr: intTensor("I32", [0, 3]),
      kv_indices: intTensor("I32", [2, 0, 1]),
      kv_last_page_len: intTensor("I32", [1]),
    }),
  );
  const inputs = Object.fromEntries(
    Object.keys(d.inputs).map((n) => [
      n,
      ["kv_indptr", "kv_indices", "kv_last_page_len"].includes(n)
        ? { type: "safetensors", path: blob, tensor_key: n }
        : n === "sm_scale"
        ? { type: "scalar", value: 0.088 }
        : { type: "random" },
    ]),
  );
  const w = {
    axes: { batch_size: 1, num_pages: 4, len_indptr: 2, num_kv_indices: 3 },
    inputs,
    uuid: "dumped-1",
  };
  mkdirSync(join(dump, "workloads", d.op_type), { recursive: true });
  writeFileSync(
    join(dump, workloadsPath(d.op_type, d.name)),
    JSON.stringify({ definition: d.name, workload: w, solution: null, evaluation: null }) + "\n",
  );
  return { dump, d, w: w as Workload };
}

Deno.test("an engine dump's workloads join the simulated ones; a broken dump names its file", async () => {
  const { dump, d, w } = writeDump();
  const cells = await collectCells("meta-llama/Llama-3.1-8B", 1, 1, undefined, [dump]);
  assert(cells.some((c) => (c.summary as { kind?: string }).kind === "dump"));
  const out = mkdtempSync("/tmp/tp-ext-");
  const s = await extractModel(
    ROOT,
    cells,
    DEFS,
    out,
    { sampleSize: 4, seed: 0, timeWeight: 0.5 },
    () => {},
  );
  assertEquals(s.dumpWorkloads, 1);
  const { set, diagnostics } = loadTraceSet(out, {
    knownDefinitions: new Map(DEFS.map((x) => [x.name, x])),
  });
  assertEquals(diagnostics, []);
  const got = set.workloads.get(d.name)!.find((x) => x.uuid === "dumped-1")!;
  assertEquals(got.axes, w.axes);
  assertEquals(checkWorkload(d, got, out).problems, []);

  // A dump whose blob is missing is refused with the file named.
  const broken = mkdtempSync("/tmp/tp-dump-");
  cpSync(join(dump, "definitions"), join(broken, "definitions"), { recursive: true });
  cpSync(join(dump, "workloads"), join(broken, "workloads"), { recursive: true });
  await assertRejects(
    () => collectCells("meta-llama/Llama-3.1-8B", 1, 1, undefined, [broken]),
    /does not exist/,
  );
});

Deno.test("with no simulated model, a cell `dumps` writes the dumps' workloads alone and names unknown definitions", async () => {
  const { dump, d, w } = writeDump();
  // A workload of a definition only the dump defines (the definitions stage does not know it) is
  // left out and named.
  const orphan = "gqa_paged_decode_h32_kv8_d128_ps1_traced";
  writeFileSync(
    join(dump, "definitions", d.op_type, `${orphan}.json`),
    formatDefinition({ ...d, name: orphan }),
  );
  writeFileSync(
    join(dump, "workloads", d.op_type, `${orphan}.jsonl`),
    JSON.stringify({
      definition: orphan,
      workload: { ...w, uuid: "orphan" },
      solution: null,
      evaluation: null,
    }) + "\n",
  );
  const collect = await runCollect(CollectParams.parse({ traces: [], models: [], dumps: [dump] }));
  const definitions: CellResult[] = [{
    id: "data",
    key: "k",
    digest: "d",
    dir: join(ROOT, "data"),
    summary: {},
  }];
  const plans = await extractStage.plan({
    params: ExtractParams.parse({ officialRoot: "" }),
    root: ROOT,
    upstream: { definitions, collect },
    toolchain: {} as never,
    env: {},
    log: () => {},
  });
  assertEquals(plans.map((p) => p.id), ["dumps"]);

  const out = mkdtempSync("/tmp/tp-ext-");
  const r = extractDumps(collect, DEFS, out);
  assertEquals(r.workloads, 1);
  assertEquals(r.definitions, [d.name]);
  assertEquals(r.unknown, [orphan]);
  const { set, diagnostics } = loadTraceSet(out, {
    knownDefinitions: new Map(DEFS.map((x) => [x.name, x])),
  });
  assertEquals(diagnostics, []);
  assertEquals(set.workloads.get(d.name)!.map((x) => x.uuid), ["dumped-1"]);
});
