/**
 * Maps kernel-call sites to definitions: by family (op type + kernel variant taken from the
 * definition name) and by equal constant axes. Also names the definition a site would need when
 * none matches, so the definition set can grow.
 */
import type { Definition } from "../../pipeline/trace/mod.ts";

/** A kernel family: the op type plus, for attention and norms, the variant. */
export type Family =
  | "gemm"
  | "rmsnorm"
  | "fused_add_rmsnorm"
  | "gqa_paged_decode"
  | "gqa_paged_prefill"
  | "gqa_ragged_prefill"
  | "mla_paged_decode"
  | "mla_paged_prefill"
  | "mla_ragged_prefill"
  | "moe"
  | "sampling";

/** The family of a collect site (op type + when it runs). */
export function siteFamily(opType: string, when: string): Family | null {
  switch (opType) {
    case "gemm":
    case "rmsnorm":
    case "fused_add_rmsnorm":
    case "moe":
    case "sampling":
      return opType;
    case "gqa_paged":
      return when === "decode" ? "gqa_paged_decode" : "gqa_paged_prefill";
    case "mla_paged":
      return when === "decode" ? "mla_paged_decode" : "mla_paged_prefill";
    case "gqa_ragged":
      return "gqa_ragged_prefill";
    case "mla_ragged":
      return "mla_ragged_prefill";
  }
  return null;
}

/** The family of a definition, from its op type and name. */
export function definitionFamily(def: Definition): Family | null {
  const n = def.name;
  switch (def.op_type) {
    case "gemm":
      return "gemm";
    case "rmsnorm":
      return n.startsWith("fused_add_rmsnorm_")
        ? "fused_add_rmsnorm"
        : n.startsWith("rmsnorm_")
        ? "rmsnorm"
        : null;
    case "gqa_paged":
      return n.includes("_decode_")
        ? "gqa_paged_decode"
        : n.includes("_prefill")
        ? "gqa_paged_prefill"
        : null;
    case "mla_paged":
      return n.includes("_decode_")
        ? "mla_paged_decode"
        : n.includes("_prefill")
        ? "mla_paged_prefill"
        : null;
    case "gqa_ragged":
      return "gqa_ragged_prefill";
    case "mla_ragged":
      return "mla_ragged_prefill";
    case "moe":
      return "moe";
    case "sampling":
      return "sampling";
  }
  return null;
}

/**
 * Definitions a site maps to: same family, and every constant axis both sides name is equal
 * (at least one must be shared). Several may match (e.g. top-k, top-p and top-k-top-p sampling,
 * or FP8 and FP4 MoE kernels for the same layer); each gets workloads.
 */
export function matchDefinitions(
  defs: Definition[],
  family: Family,
  consts: Record<string, number>,
): Definition[] {
  return defs.filter((d) => {
    if (definitionFamily(d) !== family) return false;
    let shared = 0;
    for (const [k, v] of Object.entries(consts)) {
      const ax = d.axes[k];
      if (!ax) continue;
      if (ax.type !== "const" || ax.value !== v) return false;
      shared++;
    }
    // A GEMM must agree on both N and K; other families on every shared axis.
    return family === "gemm" ? shared === 2 : shared > 0;
  });
}

/** The name (and constant axes) of the definition a site would need. */
export function neededDefinitionName(family: Family, c: Record<string, number>): string {
  switch (family) {
    case "gemm":
      return `gemm_n${c.N}_k${c.K}`;
    case "rmsnorm":
    case "fused_add_rmsnorm":
      return `${family}_h${c.hidden_size}`;
    case "gqa_paged_decode":
      return `gqa_paged_decode_h${c.num_qo_heads}_kv${c.num_kv_heads}_d${c.head_dim}_ps${c.page_size}`;
    case "gqa_paged_prefill":
      return `gqa_paged_prefill_causal_h${c.num_qo_heads}_kv${c.num_kv_heads}_d${c.head_dim}_ps${c.page_size}`;
    case "gqa_ragged_prefill":
      return `gqa_ragged_prefill_causal_h${c.num_qo_heads}_kv${c.num_kv_heads}_d${c.head_dim}`;
    case "mla_paged_decode":
      return `mla_paged_decode_h${c.num_qo_heads}_ckv${c.head_dim_ckv}_kpe${c.head_dim_kpe}_ps${c.page_size}`;
    case "mla_paged_prefill":
      return `mla_paged_prefill_causal_h${c.num_qo_heads}_ckv${c.head_dim_ckv}_kpe${c.head_dim_kpe}_ps${c.page_size}`;
    case "mla_ragged_prefill":
      return `mla_ragged_prefill_causal_h${c.num_qo_heads}_qk${c.qk_dim}_vo${c.vo_dim}`;
    case "moe":
      return `moe_topk${c.top_k}_e${c.num_local_experts}_h${c.hidden_size}_i${c.intermediate_size}`;
    case "sampling":
      return `top_k_top_p_sampling_from_probs_v${c.vocab_size}`;
  }
}

/** Whether a family's workloads need index tensors from the simulator's page tables. */
export const isAttention = (f: Family) => f.startsWith("gqa_") || f.startsWith("mla_");
