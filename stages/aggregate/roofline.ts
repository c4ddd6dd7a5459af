/**
 * FLOPs and bytes of one workload, for the % of roofline view. Bytes: every input and output
 * tensor once (shape from the definition's const axes and the workload's var axes); for paged KV
 * caches only the pages the workload indexes (num_kv_indices) count, not the whole pool. FLOPs:
 * GEMM 2MNK and GQA decode 4·H_q·d·(kv tokens), the paper's appendix formulas; any other op type
 * is treated as memory-bound (FLOPs 0), which is stated in the model column.
 */
import type { Definition, DType } from "../../pipeline/trace/mod.ts";

const DTYPE_BYTES: Record<DType, number> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float8_e4m3fn: 1,
  float8_e5m2: 1,
  float4_e2m1: 0.5,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  bool: 1,
};

/** Cost of a workload; null fields when an axis is unknown. */
export interface WorkloadCost {
  flops: number | null;
  bytes: number | null;
  model: string;
}

/** Computes FLOPs and bytes of a workload of `def` with var-axis values `axes`. */
export function workloadCost(def: Definition, axes: Record<string, number>): WorkloadCost {
  const val = (name: string): number | null => {
    const a = def.axes[name];
    if (!a) return null;
    if (a.type === "const") return a.value;
    return typeof axes[name] === "number" ? axes[name] : null;
  };
  const paged = "num_pages" in def.axes && "num_kv_indices" in def.axes;
  let bytes: number | null = 0;
  for (const spec of [...Object.values(def.inputs), ...Object.values(def.outputs)]) {
    let n = 1;
    for (const ax of spec.shape ?? []) {
      const v = paged && ax === "num_pages" ? val("num_kv_indices") : val(ax);
      if (v === null) {
        bytes = null;
        break;
      }
      n *= v;
    }
    if (bytes === null) break;
    bytes += n * DTYPE_BYTES[spec.dtype];
  }
  let flops: number | null = 0;
  let model = "memory-bound (FLOPs not modelled)";
  if (def.op_type === "gemm") {
    const [m, n, k] = [val("M"), val("N"), val("K")];
    flops = m !== null && n !== null && k !== null ? 2 * m * n * k : null;
    model = "2MNK";
  } else if (/decode/.test(def.name) && def.op_type.startsWith("gqa")) {
    const [h, d, kv, ps] = [
      val("num_qo_heads"),
      val("head_dim"),
      val("num_kv_indices"),
      val("page_size") ?? 1,
    ];
    flops = h !== null && d !== null && kv !== null ? 4 * h * d * kv * ps : null;
    model = "4·Hq·d·kv_tokens";
  }
  return { flops, bytes, model };
}
