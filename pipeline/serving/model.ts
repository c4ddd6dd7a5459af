/**
 * Model configs → the per-rank shapes a serving engine's kernels see, and the "kernel plan": the
 * list of kernel call sites one forward pass makes (with their layer multiplicity and a roofline
 * cost). Shapes follow the tensor/expert-parallel rules in data/models/model-configs.json
 * (`_tp_shape_rules`).
 */
import { readFileSync } from "node:fs";
import { z } from "zod";

/** Thrown for an unknown model or a config missing a field; names the file and the field. */
export class ModelConfigError extends Error {}

const PosInt = z.number().int().positive();
const NullableInt = z.number().int().nonnegative().nullable().optional();

/** The fields tracepipe reads from one model entry (others are kept by the file, ignored here). */
export const ModelConfig = z.object({
  architecture: z.string(),
  hidden_size: PosInt,
  num_hidden_layers: PosInt,
  num_attention_heads: PosInt,
  num_key_value_heads: PosInt,
  head_dim: PosInt.optional(),
  intermediate_size: PosInt,
  vocab_size: PosInt,
  rms_norm_eps: z.number().positive(),
  num_experts: NullableInt,
  n_routed_experts: NullableInt,
  num_experts_per_tok: NullableInt,
  moe_intermediate_size: PosInt.optional(),
  n_shared_experts: NullableInt,
  first_k_dense_replace: NullableInt,
  n_group: NullableInt,
  topk_group: NullableInt,
  routed_scaling_factor: z.number().optional(),
  mla: z.object({
    q_lora_rank: PosInt,
    kv_lora_rank: PosInt,
    qk_nope_head_dim: PosInt,
    qk_rope_head_dim: PosInt,
    v_head_dim: PosInt,
  }).optional(),
  rope_scaling: z.unknown().optional(),
  quantization_config: z.object({ quant_method: z.string() }).passthrough().optional(),
});
export type ModelConfig = z.infer<typeof ModelConfig>;

/** Loads one model's config, with errors naming the file and the JSON path of the bad field. */
export function loadModelConfig(path: string, name: string, display = path): ModelConfig {
  let doc: { models?: Record<string, unknown> };
  try {
    doc = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ModelConfigError(`${display}: ${(e as Error).message}`);
  }
  const models = doc.models ?? {};
  let raw = models[name] as Record<string, unknown> | undefined;
  if (!raw) {
    throw new ModelConfigError(
      `${display}: unknown model "${name}" (known: ${Object.keys(models).join(", ")})`,
    );
  }
  if (typeof raw.same_architecture_as === "string") {
    raw = models[raw.same_architecture_as] as Record<string, unknown>;
  }
  const r = ModelConfig.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new ModelConfigError(
      `${display}: $.models["${name}"].${i.path.join(".")}: ${i.message}`,
    );
  }
  return r.data;
}

/** How a model is deployed. */
export interface Deployment {
  tp: number;
  ep: number;
}

/** Which iterations a call site runs in. */
export type When = "any" | "extend" | "decode" | "extend_ragged" | "extend_paged";
/** Which per-iteration count is the site's leading dimension. */
export type Rows = "tokens" | "seqs" | "tokens_x_qheads" | "tokens_x_kvheads";

/**
 * One kernel call site of a forward pass. `consts` are the kernel's constant axes (they pick the
 * definition); the roofline coefficients give its time from the iteration's counts:
 * flops = fRow*rows + fAttn*qk, bytes = b0 + bRow*rows + bKv*kvTokens + bExp*expertsActive.
 */
export interface PlanSite {
  site: string;
  opType: string;
  when: When;
  rows: Rows;
  mult: number;
  consts: Record<string, number>;
  fRow: number;
  fAttn: number;
  b0: number;
  bRow: number;
  bKv: number;
  bExp: number;
}

/** A model's per-rank shapes and its kernel plan. */
export interface ModelShape {
  name: string;
  attention: "gqa" | "mla";
  layers: number;
  denseLayers: number;
  moeLayers: number;
  hidden: number;
  vocab: number;
  qHeads: number;
  kvHeads: number;
  headDim: number;
  /** KV bytes per token per rank (all layers). */
  kvBytesPerToken: number;
  /** Weight bytes per rank. */
  weightBytes: number;
  experts: number;
  localExperts: number;
  topK: number;
  moeIntermediate: number;
  /** Softmax scale the attention kernels use. */
  smScale: number;
  eps: number;
  routedScalingFactor: number;
  plan: PlanSite[];
}

const BF16 = 2;

/** Derives per-rank shapes and the kernel plan; throws for a TP/EP degree the model cannot use. */
export function deriveShape(
  name: string,
  cfg: ModelConfig,
  dep: Deployment,
  pageSize: number,
): ModelShape {
  const d = rankDims(name, cfg, dep);
  const { tp, H, L, V, E } = d;
  const b = new PlanBuilder(d.wb);
  let params = 2 * V * H / tp; // embedding + lm_head, vocab-parallel
  // Layer 0's input norm has no residual to add; every later norm (and the final one) is fused.
  b.norm("input_layernorm.first", H, 1, false);
  b.norm("layernorm.fused", H, 2 * L, true);
  const attn = cfg.mla
    ? mlaAttention(b, cfg, cfg.mla, d, pageSize)
    : gqaAttention(b, cfg, d, pageSize);
  params += attn.params;
  if (d.denseLayers > 0) params += denseMlp(b, cfg, d);
  if (d.moeLayers > 0) params += moeBlock(b, cfg, d);
  samplingSites(b, d);
  const embedBytes = 2 * V * H / tp * BF16;
  const weightBytes = embedBytes + (params - 2 * V * H / tp) * d.wb;
  return {
    name,
    attention: attn.attention,
    layers: L,
    denseLayers: d.denseLayers,
    moeLayers: d.moeLayers,
    hidden: H,
    vocab: V,
    qHeads: d.qHeads,
    kvHeads: d.kvHeads,
    headDim: d.headDim,
    kvBytesPerToken: attn.kvBytesPerToken,
    weightBytes,
    experts: E,
    localExperts: E ? E / d.ep : 0,
    topK: d.topK,
    moeIntermediate: d.Imoe,
    smScale: attn.smScale,
    eps: cfg.rms_norm_eps,
    routedScalingFactor: cfg.routed_scaling_factor ?? 1,
    plan: b.plan,
  };
}

/** A model's dimensions as one rank of its deployment sees them. */
interface RankDims {
  tp: number;
  ep: number;
  H: number;
  L: number;
  V: number;
  /** Routed experts (0 for a dense model). */
  E: number;
  topK: number;
  denseLayers: number;
  moeLayers: number;
  Imoe: number;
  qHeads: number;
  headDim: number;
  kvHeads: number;
  /** Weight bytes per parameter. */
  wb: number;
}

/** Checks the deployment against the config and derives the per-rank dimensions. */
function rankDims(name: string, cfg: ModelConfig, dep: Deployment): RankDims {
  const { tp, ep } = dep;
  const bad = (msg: string) => {
    throw new ModelConfigError(`model "${name}": ${msg}`);
  };
  if (cfg.num_attention_heads % tp !== 0) {
    bad(`tp=${tp} does not divide num_attention_heads=${cfg.num_attention_heads}`);
  }
  if (tp % ep !== 0) bad(`ep=${ep} must divide tp=${tp} (experts are sharded over the TP group)`);
  const H = cfg.hidden_size;
  const L = cfg.num_hidden_layers;
  const E = cfg.n_routed_experts ?? cfg.num_experts ?? 0;
  const topK = E
    ? (cfg.num_experts_per_tok ?? bad("MoE model without num_experts_per_tok")) as number
    : 0;
  if (E && !cfg.moe_intermediate_size) bad("MoE model without moe_intermediate_size");
  if (E && E % ep !== 0) bad(`ep=${ep} does not divide the ${E} experts`);
  const denseLayers = E ? (cfg.first_k_dense_replace ?? 0) : L;
  const fp8 = cfg.quantization_config?.quant_method === "fp8";
  return {
    tp,
    ep,
    H,
    L,
    V: cfg.vocab_size,
    E,
    topK,
    denseLayers,
    moeLayers: L - denseLayers,
    Imoe: cfg.moe_intermediate_size ?? 0,
    qHeads: cfg.num_attention_heads / tp,
    headDim: cfg.head_dim ?? H / cfg.num_attention_heads,
    kvHeads: Math.max(1, cfg.num_key_value_heads / tp),
    wb: fp8 ? 1 : BF16,
  };
}

/** A site's fields before the defaults (any iteration, one row per token, zero cost) fill in. */
type SiteSpec = Partial<PlanSite> & Pick<PlanSite, "site" | "opType" | "mult" | "consts">;

/** Collects a forward pass's call sites in launch order, with the roofline of common kinds. */
class PlanBuilder {
  readonly plan: PlanSite[] = [];

  /** `wb`: bytes per weight of the model's (possibly quantized) GEMMs. */
  constructor(private readonly wb: number) {}

  /** Adds a site. */
  site(s: SiteSpec): void {
    this.plan.push({
      when: "any",
      rows: "tokens",
      fRow: 0,
      fAttn: 0,
      b0: 0,
      bRow: 0,
      bKv: 0,
      bExp: 0,
      ...s,
    });
  }

  /** Adds a GEMM of an N×K weight (`w` bytes per weight) applied to every row. */
  gemm(s: string, N: number, K: number, mult: number, extra: Partial<PlanSite> = {}, w = this.wb) {
    this.site({
      site: s,
      opType: "gemm",
      mult,
      consts: { N, K },
      fRow: 2 * N * K,
      b0: N * K * w,
      bRow: (N + K) * BF16,
      ...extra,
    });
  }

  /** Adds an RMSNorm, fused with the residual add or not. */
  norm(s: string, hidden: number, mult: number, fused: boolean, rows: Rows = "tokens") {
    this.site({
      site: s,
      opType: fused ? "fused_add_rmsnorm" : "rmsnorm",
      mult,
      rows,
      consts: { hidden_size: hidden },
      b0: hidden * BF16,
      bRow: hidden * BF16 * (fused ? 4 : 2),
    });
  }
}

/** What the attention block adds to the shape: its kind, KV size, softmax scale and parameters. */
interface AttentionPart {
  attention: "gqa" | "mla";
  kvBytesPerToken: number;
  smScale: number;
  /** Attention parameters per rank, all layers. */
  params: number;
}

/**
 * The paged attention sites of a family, decode first: the same kernel shape serves decode and
 * prefill over the paged cache.
 */
const pagedSites = (family: "mla" | "gqa") =>
  [
    [`attn.${family}_decode`, "decode"],
    [`attn.${family}_prefill_paged`, "extend_paged"],
  ] as const;

/** Multi-head latent attention (DeepSeek): low-rank projections over a compressed KV cache. */
function mlaAttention(
  b: PlanBuilder,
  cfg: ModelConfig,
  m: NonNullable<ModelConfig["mla"]>,
  d: RankDims,
  pageSize: number,
): AttentionPart {
  const { tp, H, L, qHeads } = d;
  const qk = m.qk_nope_head_dim + m.qk_rope_head_dim;
  const kvBytesPerToken = L * (m.kv_lora_rank + m.qk_rope_head_dim) * BF16;
  const smScale = mlaSmScale(cfg, qk);
  const aDim = m.q_lora_rank + m.kv_lora_rank + m.qk_rope_head_dim;
  b.gemm("attn.fused_qkv_a_proj", aDim, H, L);
  b.norm("attn.q_a_layernorm", m.q_lora_rank, L, false);
  b.norm("attn.kv_a_layernorm", m.kv_lora_rank, L, false);
  b.gemm("attn.q_b_proj", qHeads * qk, m.q_lora_rank, L);
  // The up-projection of K/V runs as a GEMM only on the (non-absorbed) extend path; decode
  // absorbs it into batched matmuls, which have no definition family.
  b.gemm("attn.kv_b_proj", qHeads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank, L, {
    when: "extend",
  });
  b.gemm("attn.o_proj", H, qHeads * m.v_head_dim, L);
  const ckv = m.kv_lora_rank, kpe = m.qk_rope_head_dim;
  const kvTok = (ckv + kpe) * BF16;
  for (const [site, when] of pagedSites("mla")) {
    b.site({
      site,
      opType: "mla_paged",
      when,
      mult: L,
      consts: { num_qo_heads: qHeads, head_dim_ckv: ckv, head_dim_kpe: kpe, page_size: pageSize },
      fAttn: 2 * qHeads * (ckv + kpe + ckv),
      bRow: qHeads * (ckv + kpe + ckv) * BF16,
      bKv: kvTok,
    });
  }
  b.site({
    site: "attn.mla_prefill_ragged",
    opType: "mla_ragged",
    when: "extend_ragged",
    mult: L,
    consts: { num_qo_heads: qHeads, num_kv_heads: qHeads, qk_dim: qk, vo_dim: m.v_head_dim },
    fAttn: 2 * qHeads * (qk + m.v_head_dim),
    bRow: qHeads * (2 * qk + 2 * m.v_head_dim) * BF16,
  });
  const params = L * (H * aDim + m.q_lora_rank * cfg.num_attention_heads * qk / tp +
    m.kv_lora_rank * cfg.num_attention_heads * (m.qk_nope_head_dim + m.v_head_dim) / tp +
    cfg.num_attention_heads * m.v_head_dim * H / tp);
  return { attention: "mla", kvBytesPerToken, smScale, params };
}

/** MLA's softmax scale over the `qk`-dim query/key heads. */
function mlaSmScale(cfg: ModelConfig, qk: number): number {
  // DeepSeek's YaRN scaling multiplies the softmax scale by mscale^2 (mscale = 0.1 ln(factor) + 1).
  const rs = cfg.rope_scaling as
    | { type?: string; factor?: number; mscale_all_dim?: number }
    | undefined;
  let mscale = 1;
  if (rs && rs.type === "yarn" && rs.factor && rs.mscale_all_dim) {
    mscale = 0.1 * rs.mscale_all_dim * Math.log(rs.factor) + 1;
  }
  return (mscale * mscale) / Math.sqrt(qk);
}

/** Grouped-query attention with a per-head KV cache (Llama, Qwen, gpt-oss). */
function gqaAttention(
  b: PlanBuilder,
  cfg: ModelConfig,
  d: RankDims,
  pageSize: number,
): AttentionPart {
  const { tp, H, L, qHeads, kvHeads, headDim } = d;
  const kvBytesPerToken = 2 * L * kvHeads * headDim * BF16;
  const smScale = 1 / Math.sqrt(headDim);
  b.gemm("attn.qkv_proj", (qHeads + 2 * kvHeads) * headDim, H, L);
  if (cfg.architecture.startsWith("Qwen3")) {
    // Qwen3's QK-norm: an RMSNorm over head_dim for every query and key head.
    b.norm("attn.q_norm", headDim, L, false, "tokens_x_qheads");
    b.norm("attn.k_norm", headDim, L, false, "tokens_x_kvheads");
  }
  const consts = { num_qo_heads: qHeads, num_kv_heads: kvHeads, head_dim: headDim };
  const f = 4 * qHeads * headDim;
  const kvTok = 2 * kvHeads * headDim * BF16;
  for (const [site, when] of pagedSites("gqa")) {
    b.site({
      site,
      opType: "gqa_paged",
      when,
      mult: L,
      consts: { ...consts, page_size: pageSize },
      fAttn: f,
      bRow: 2 * qHeads * headDim * BF16,
      bKv: kvTok,
    });
  }
  b.site({
    site: "attn.gqa_prefill_ragged",
    opType: "gqa_ragged",
    when: "extend_ragged",
    mult: L,
    consts,
    fAttn: f,
    bRow: 2 * qHeads * headDim * BF16 + kvTok,
  });
  b.gemm("attn.o_proj", H, qHeads * headDim, L);
  const params = L * (H * (cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * headDim / tp +
    cfg.num_attention_heads * headDim * H / tp);
  return { attention: "gqa", kvBytesPerToken, smScale, params };
}

/** The dense layers' MLP; returns its parameters per rank. */
function denseMlp(b: PlanBuilder, cfg: ModelConfig, d: RankDims): number {
  const { tp, H, denseLayers } = d;
  const I = cfg.intermediate_size;
  b.gemm("mlp.gate_up_proj", 2 * I / tp, H, denseLayers);
  b.gemm("mlp.down_proj", H, I / tp, denseLayers);
  return denseLayers * 3 * H * I / tp;
}

/** The MoE layers' router, routed experts and shared experts; returns their parameters per rank. */
function moeBlock(b: PlanBuilder, cfg: ModelConfig, d: RankDims): number {
  const { tp, ep, H, E, Imoe, topK, moeLayers } = d;
  const localExperts = E / ep;
  // The router runs replicated in bf16 on every rank.
  b.gemm("moe.router", E, H, moeLayers, {}, BF16);
  const perExpert = 3 * H * Imoe * d.wb;
  b.site({
    site: "moe.experts",
    opType: "moe",
    mult: moeLayers,
    consts: {
      num_experts: E,
      num_local_experts: localExperts,
      hidden_size: H,
      intermediate_size: Imoe,
      top_k: topK,
    },
    fRow: 2 * 3 * H * Imoe * topK / ep,
    bRow: 4 * H * BF16,
    bExp: perExpert * (ep === 1 ? 1 / tp : 1),
  });
  const shared = cfg.n_shared_experts ?? 0;
  if (shared > 0) {
    b.gemm("moe.shared_gate_up_proj", 2 * shared * Imoe / tp, H, moeLayers);
    b.gemm("moe.shared_down_proj", H, shared * Imoe / tp, moeLayers);
  }
  return moeLayers * (E * H + E * 3 * H * Imoe / tp + shared * 3 * H * Imoe / tp);
}

/** The logits GEMM and the sampler, once per iteration. */
function samplingSites(b: PlanBuilder, d: RankDims): void {
  // Logits only for the last token of each sequence that samples this iteration.
  b.gemm("lm_head", d.V / d.tp, d.H, 1, { rows: "seqs" }, BF16);
  b.site({
    site: "sampling",
    opType: "sampling",
    mult: 1,
    rows: "seqs",
    consts: { vocab_size: d.V },
    bRow: d.V * 4 * 2,
  });
}
