/**
 * Builds FlashInfer workloads (+ safetensors blobs) for chosen events: index tensors from the
 * simulator's page tables, scalars from the model, everything else random. UUIDs are derived from
 * the content, so equal workloads get equal ids on every run.
 */
import { canonicalJson, sha256 } from "../../pipeline/engine/mod.ts";
import {
  blobPath,
  type Definition,
  encodeSafetensors,
  type InputSpec,
  intTensor,
  type RawTensor,
  TRACE_TO_SAFETENSORS,
  type Workload,
} from "../../pipeline/trace/mod.ts";
import type { BatchEntry } from "../../pipeline/serving/mod.ts";
import { rng } from "../../pipeline/lib/mod.ts";

/** A uuid-shaped string (version 5 layout) from a sha256 hex digest. */
export function uuidFromDigest(hex: string): string {
  const v = ((parseInt(hex[16], 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-5${hex.slice(13, 16)}-${v}${hex.slice(17, 20)}-${
    hex.slice(20, 32)
  }`;
}

/** Model-level scalars for scalar inputs. */
export interface Scalars {
  sm_scale: number;
  routed_scaling_factor: number;
  local_expert_offset: number;
  topK: number;
  topP: number;
}

/** A built workload and the blob it references (if any). */
export interface Built {
  workload: Workload;
  blob?: { path: string; bytes: Uint8Array };
}

function floatTensor(dtype: "F32", values: number[]): RawTensor {
  return { dtype, shape: [values.length], data: new Uint8Array(Float32Array.from(values).buffer) };
}

/** Index tensors of one attention call, page ids relabeled densely (order kept). */
export function attentionTensors(entries: BatchEntry[], pageSize: number) {
  const np = entries.map((e) => Math.ceil(e.kv / pageSize));
  const distinct = new Set<number>();
  entries.forEach((e, i) => {
    for (let j = 0; j < np[i]; j++) distinct.add(e.pages[j]);
  });
  const sorted = [...distinct].sort((a, b) => a - b);
  const rank = new Map(sorted.map((p, i) => [p, i]));
  const kvIndices: number[] = [];
  const kvIndptr = [0], qoIndptr = [0], kvTokIndptr = [0], lastLen: number[] = [];
  entries.forEach((e, i) => {
    for (let j = 0; j < np[i]; j++) kvIndices.push(rank.get(e.pages[j])!);
    kvIndptr.push(kvIndptr[i] + np[i]);
    qoIndptr.push(qoIndptr[i] + e.q);
    kvTokIndptr.push(kvTokIndptr[i] + e.kv);
    lastLen.push(e.kv - (np[i] - 1) * pageSize);
  });
  return { kvIndices, kvIndptr, qoIndptr, kvTokIndptr, lastLen, numPages: sorted.length };
}

/**
 * Builds one workload. `axes` are candidate var-axis values (only the definition's var axes are
 * kept); `ints` are integer tensors by input name (written to the blob).
 */
export function buildWorkload(
  def: Definition,
  axes: Record<string, number>,
  ints: Record<string, number[]>,
  scalars: Scalars,
  provenance: Record<string, string>,
): Built {
  const wAxes: Record<string, number> = {};
  for (const [name, ax] of Object.entries(def.axes)) {
    if (ax.type !== "var") continue;
    if (axes[name] === undefined) {
      throw new Error(`definition ${def.name}: cannot derive var axis "${name}"`);
    }
    wAxes[name] = axes[name];
  }
  const tensors: Record<string, RawTensor> = {};
  const scalarVals: Record<string, number> = {};
  for (const [name, spec] of Object.entries(def.inputs)) {
    if (spec.shape === null) {
      const v = (scalars as unknown as Record<string, number>)[name];
      if (v === undefined) {
        throw new Error(`definition ${def.name}: no value for scalar input "${name}"`);
      }
      scalarVals[name] = v;
    } else if (ints[name]) {
      const st = TRACE_TO_SAFETENSORS[spec.dtype];
      if (st !== "I32" && st !== "I64") {
        throw new Error(
          `definition ${def.name}: input "${name}" is ${spec.dtype}, not an index type`,
        );
      }
      tensors[name] = intTensor(st, ints[name]);
    } else if (
      name === "topk_ids" && spec.shape.length === 2 && def.axes.num_experts?.type === "const"
    ) {
      // Pre-routed MoE: each token's top_k distinct experts (seeded by the workload's axes).
      const E = (def.axes.num_experts as { value: number }).value;
      const k = axes.top_k ?? (def.axes.top_k as { value: number } | undefined)?.value ?? 1;
      const rand = rng(parseInt(sha256(canonicalJson({ def: def.name, wAxes })).slice(0, 8), 16));
      const ids: number[] = [];
      for (let t = 0; t < wAxes[spec.shape[0]]; t++) {
        const picked = new Set<number>();
        while (picked.size < Math.min(k, E)) picked.add(Math.floor(rand() * E));
        ids.push(...picked);
      }
      tensors[name] = intTensor(TRACE_TO_SAFETENSORS[spec.dtype] as "I32" | "I64", ids, [
        wAxes[spec.shape[0]],
        Math.min(k, E),
      ]);
    } else if (def.op_type === "sampling" && name === "top_k" && spec.shape.length === 1) {
      tensors[name] = intTensor(
        TRACE_TO_SAFETENSORS[spec.dtype] as "I32" | "I64",
        new Array(wAxes.batch_size).fill(scalars.topK),
      );
    } else if (def.op_type === "sampling" && name === "top_p" && spec.dtype === "float32") {
      tensors[name] = floatTensor("F32", new Array(wAxes.batch_size).fill(scalars.topP));
    }
  }
  const names = Object.keys(tensors);
  const bytes = names.length ? encodeSafetensors(tensors, provenance) : undefined;
  const uuid = uuidFromDigest(sha256(canonicalJson({
    definition: def.name,
    axes: wAxes,
    scalars: scalarVals,
    blob: bytes ? sha256(bytes) : null,
  })));
  const path = bytes ? blobPath(def.op_type, def.name, uuid) : "";
  const inputs: Record<string, InputSpec> = {};
  for (const [name, spec] of Object.entries(def.inputs)) {
    if (spec.shape === null) inputs[name] = { type: "scalar", value: scalarVals[name] };
    else if (tensors[name]) inputs[name] = { type: "safetensors", path, tensor_key: name };
    else inputs[name] = { type: "random" };
  }
  return { workload: { axes: wAxes, inputs, uuid }, blob: bytes ? { path, bytes } : undefined };
}
