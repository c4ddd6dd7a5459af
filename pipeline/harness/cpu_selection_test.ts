/**
 * The CPU-sized selection's cost estimate, on the real definitions whose large workloads ran out
 * the 300 s limit on a 2-core CPU (a sampler's distribution test, float32 attention references),
 * and when the selection is in force.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT, type Toolchain } from "../engine/mod.ts";
import { FAKE_GPU, FAKE_TOOLCHAIN } from "../engine/testdata/engine_stages.ts";
import { Definition } from "../trace/mod.ts";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import {
  type CpuSelection,
  cpuSelectionInForce,
  cpuSelectionNotRunnable,
  cpuSelectionReason,
  workloadCost,
} from "./mod.ts";

const def = (rel: string) =>
  Definition.parse(JSON.parse(readFileSync(join(REPO_ROOT, "data/definitions", rel), "utf8")));

const P: CpuSelection = { cpu_selection: true, cpu_max_workloads: 3, cpu_max_cost: 1e9 };

Deno.test("a sampler's distribution test is over any CPU budget; an empty batch is not", () => {
  const topK = def("sampling/top_k_sampling_from_probs_v128256.json");
  // 500 000 draws per row over 128 256 tokens, whatever else the workload holds.
  assert(workloadCost(topK, { batch_size: 1 }) >= 500_000 * 128_256);
  assertEquals(
    workloadCost(topK, { batch_size: 2 }),
    workloadCost(topK, { batch_size: 64 }) - 62 * (128_256 + 2),
    "two rows are tested however large the batch",
  );
  assert(workloadCost(topK, { batch_size: 0 }) < 1e6, "an empty batch draws nothing");
  assertMatch(
    cpuSelectionReason(topK, { batch_size: 1 }, P, 0) ?? "",
    /^estimated cost 6\.4e10 over/,
  );
});

Deno.test("attention costs every query element against every KV token it may see", () => {
  const paged = def("gqa_paged/gqa_paged_prefill_causal_h32_kv8_d128_ps1.json");
  // The workload whose reference ran out the 300 s limit on the CPU (6 258 queries, 14 450 pages).
  const big = { len_indptr: 3, total_q: 6258, num_kv_indices: 14450, num_pages: 14450 };
  assert(workloadCost(paged, big) >= 6258 * 32 * 128 * 14450);
  const small = { len_indptr: 2, total_q: 34, num_kv_indices: 1, num_pages: 2 };
  assert(workloadCost(paged, small) < 1e6);
  // Pages the workload does not index cost nothing: num_pages does not enter the product.
  assert(workloadCost(paged, { ...small, num_pages: 200_000 }) < 1e9);
  const ps64 = def("gqa_paged/gqa_paged_prefill_causal_h32_kv8_d128_ps64.json");
  const pages = { len_indptr: 2, total_q: 1087, num_kv_indices: 64, num_pages: 64, batch_size: 1 };
  assert(workloadCost(ps64, pages) >= 1087 * 32 * 128 * 64 * 64, "a page holds 64 tokens");
  const ragged = def("gqa_ragged/gqa_ragged_prefill_causal_h32_kv8_d128.json");
  assertEquals(
    workloadCost(ragged, { len_indptr: 2, total_q: 2, total_kv: 2 }) > 2 * 32 * 128 * 2,
    true,
  );
  const mla = def("mla_paged/mla_paged_decode_h16_ckv512_kpe64_ps64.json");
  const one = workloadCost(mla, { batch_size: 1, num_pages: 2, len_indptr: 2, num_kv_indices: 2 });
  assert(one >= 16 * (512 + 64) * 2 * 64, "q_nope and q_pe are the query");
});

Deno.test("a norm or a GEMM costs its operands; the budget and the count say why a workload is left out", () => {
  const norm = def("rmsnorm/rmsnorm_h4096.json");
  assertEquals(workloadCost(norm, { batch_size: 2 }), 2 * 4096 * 2 + 4096);
  assertEquals(cpuSelectionReason(norm, { batch_size: 2 }, P, 2), null);
  const gemm = def("gemm/gemm_n4096_k4096.json");
  assertEquals(workloadCost(gemm, { M: 2 }), 2 * 4096 + 4096 * 4096 + 2 * 4096);
  assertEquals(
    cpuSelectionReason(norm, { batch_size: 2 }, P, 3),
    "cpu_max_workloads 3 reached",
  );
  assertMatch(
    cpuSelectionReason(norm, { batch_size: 1_000_000 }, P, 0) ?? "",
    /^estimated cost 8\.2e9 over cpu_max_cost 1\.0e9$/,
  );
  assertEquals(
    cpuSelectionNotRunnable("verify", "cpu_max_workloads 3 reached"),
    "CPU-sized selection: cpu_max_workloads 3 reached (pass --set verify.cpu_selection=false to judge everything)",
  );
});

Deno.test("the CPU-sized selection is in force without a GPU, unless turned off", () => {
  const cpu: Toolchain = FAKE_TOOLCHAIN;
  const gpu: Toolchain = { ...FAKE_TOOLCHAIN, gpus: [FAKE_GPU] };
  assertEquals(cpuSelectionInForce(cpu, P), true);
  assertEquals(cpuSelectionInForce(gpu, P), false);
  assertEquals(cpuSelectionInForce(cpu, { ...P, cpu_selection: false }), false);
});
