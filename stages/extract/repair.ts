/**
 * Repairs the official FlashInfer-Trace workloads, whose safetensors blobs were never published:
 * regenerates each blob consistent with the workload's axes (seeded, per workload), writes it at
 * the workload's original path with its original UUID (so flashinfer-bench finds it), marks it as
 * synthesized in the blob metadata and in provenance.json, and checks every constraint.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { formatDiagnostic, sha256 } from "../../pipeline/engine/mod.ts";
import {
  checkWorkload,
  type Definition,
  encodeSafetensors,
  intTensor,
  listFiles,
  parseJsonl,
  type RawTensor,
  splitProblems,
  TRACE_TO_SAFETENSORS,
  type Workload,
} from "../../pipeline/trace/mod.ts";
import { rng } from "../../pipeline/lib/mod.ts";

/** Summary of a repair. */
export interface RepairSummary {
  workloads: number;
  blobs: number;
  unrepairable: string[];
  unsupportedConstraints: string[];
  /**
   * Workloads whose axes admit no causal layout (total_q > KV tokens): captured from SGLang's
   * split prefill, where the paged kernel sees only the cached prefix. Their blobs satisfy every
   * declared constraint; only the causal rule q_i <= kv_i cannot hold.
   */
  causalIncompatible: string[];
}

/** Splits `total` into `n` positive parts (seeded), each ≤ cap[i] when caps are given. */
function split(total: number, n: number, rand: () => number, min = 1): number[] {
  if (n === 0) return [];
  if (total < n * min) throw new Error(`cannot split ${total} into ${n} parts of at least ${min}`);
  const w = Array.from({ length: n }, () => 0.2 + rand());
  const sw = w.reduce((a, b) => a + b, 0);
  const free = total - n * min;
  const parts = w.map((x) => min + Math.floor((free * x) / sw));
  let rest = total - parts.reduce((a, b) => a + b, 0);
  for (let i = 0; rest > 0; i = (i + 1) % n, rest--) parts[i]++;
  return parts;
}

const cumsum = (xs: number[]) =>
  xs.reduce((acc, x) => (acc.push(acc[acc.length - 1] + x), acc), [0]);

function gauss(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

function floatTensor(
  dtype: "F32" | "BF16",
  shape: number[],
  rand: () => number,
  scale: number,
): RawTensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = gauss(rand) * scale;
  if (dtype === "F32") return { dtype, shape, data: new Uint8Array(f.buffer) };
  // bf16 = the high half of the float32 bits (round to nearest even).
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = (u[i] + 0x7fff + ((u[i] >>> 16) & 1)) >>> 16;
  return { dtype, shape, data: new Uint8Array(out.buffer) };
}

/** Synthesizes the tensors of one workload's blob inputs; throws when the axes admit none. */
export function synthesize(
  def: Definition,
  w: Workload,
  names: string[],
  seed: number,
): Record<string, RawTensor> {
  const rand = rng(seed);
  const ax: Record<string, number> = { ...w.axes };
  for (const [k, a] of Object.entries(def.axes)) if (a.type === "const") ax[k] = a.value;
  const ps = ax.page_size ?? 1;
  const bs = ax.len_indptr !== undefined ? ax.len_indptr - 1 : ax.batch_size;
  const out: Record<string, RawTensor> = {};
  const int = (name: string, vals: number[]) => {
    const dt = TRACE_TO_SAFETENSORS[def.inputs[name].dtype];
    if (dt !== "I32" && dt !== "I64") throw new Error(`${name} is not an integer input`);
    out[name] = intTensor(dt, vals);
  };
  const want = new Set(names);
  let pagesPer: number[] | null = null;
  if (want.has("kv_indices") || (want.has("kv_indptr") && "kv_indices" in def.inputs)) {
    // Paged: pages per request sum to num_kv_indices; ids distinct where the pool allows.
    // Official captures can hold fewer pages than requests (see causalIncompatible): allow empty ones.
    pagesPer = split(ax.num_kv_indices, bs, rand, ax.num_kv_indices >= bs ? 1 : 0);
    const pool = ax.num_pages;
    const ids: number[] = [];
    if (pool >= ax.num_kv_indices) {
      const perm = new Map<number, number>();
      for (let i = 0; i < ax.num_kv_indices; i++) {
        const j = i + Math.floor(rand() * (pool - i));
        const vi = perm.get(i) ?? i, vj = perm.get(j) ?? j;
        perm.set(i, vj);
        perm.set(j, vi);
        ids.push(vj);
      }
    } else for (let i = 0; i < ax.num_kv_indices; i++) ids.push(Math.floor(rand() * pool));
    if (want.has("kv_indptr")) int("kv_indptr", cumsum(pagesPer));
    if (want.has("kv_indices")) int("kv_indices", ids);
  }
  const last = pagesPer ? pagesPer.map(() => 1 + Math.floor(rand() * ps)) : null;
  if (want.has("kv_last_page_len")) int("kv_last_page_len", last!);
  if (want.has("kv_indptr") && !pagesPer) {
    // Ragged: KV tokens per request; queries are split below so that q_i <= kv_i.
    pagesPer = split(ax.total_kv, bs, rand);
    int("kv_indptr", cumsum(pagesPer));
  }
  if (want.has("qo_indptr")) {
    const kvTok = pagesPer!.map((
      p,
      i,
    ) => ("kv_indices" in def.inputs ? p * ps - (last ? ps - last[i] : 0) : p));
    const kvTotal = kvTok.reduce((a, b) => a + b, 0);
    if (ax.total_q > kvTotal) {
      // Axes that no causal split satisfies (q_i <= kv_i for all i): split queries evenly and
      // let the caller report the workload as causal-incompatible.
      int("qo_indptr", cumsum(split(ax.total_q, bs, rand, ax.total_q >= bs ? 1 : 0)));
    } else {
      // Proportional split, capped per request (causal prefill needs q_i <= kv_i).
      const q = kvTok.map((k) => Math.min(k, Math.floor((ax.total_q * k) / kvTotal)));
      let rest = ax.total_q - q.reduce((a, b) => a + b, 0);
      for (let i = 0; rest > 0; i = (i + 1) % bs) {
        if (q[i] < kvTok[i]) {
          q[i]++;
          rest--;
        }
      }
      int("qo_indptr", cumsum(q));
    }
  }
  for (const n of names) {
    if (out[n]) continue;
    const spec = def.inputs[n];
    const dt = TRACE_TO_SAFETENSORS[spec.dtype];
    if (spec.shape && (dt === "F32" || dt === "BF16")) {
      out[n] = floatTensor(dt, spec.shape.map((a) => ax[a]), rand, n === "routing_bias" ? 0.1 : 1);
    } else throw new Error(`no synthesis rule for input "${n}" (${spec.dtype})`);
  }
  return out;
}

/** Repairs every workload under `root/workloads`, writing workloads + blobs + provenance to `out`. */
export function repairOfficial(
  root: string,
  defs: Definition[],
  out: string,
  seed: number,
): RepairSummary {
  const byName = new Map(defs.map((d) => [d.name, d]));
  // Parse the workload files directly: the definitions live in another root.
  const workloads = new Map<string, Workload[]>();
  const summary: RepairSummary = {
    workloads: 0,
    blobs: 0,
    unrepairable: [],
    unsupportedConstraints: [],
    causalIncompatible: [],
  };
  const provenance: Array<Record<string, string>> = [];
  const unsupported = new Set<string>();
  for (const f of listFiles(join(root, "workloads"), ".jsonl")) {
    const rel = relative(root, f);
    mkdirSync(dirname(join(out, rel)), { recursive: true });
    copyFileSync(f, join(out, rel)); // byte-identical: original UUIDs and blob paths
    const { traces, diagnostics } = parseJsonl(readFileSync(f, "utf8"), rel);
    for (const d of diagnostics) summary.unrepairable.push(formatDiagnostic(d));
    for (const [, t] of traces) {
      workloads.set(t.definition, [...(workloads.get(t.definition) ?? []), t.workload]);
    }
  }
  for (const [defName, wls] of workloads) {
    const def = byName.get(defName);
    if (!def) {
      summary.unrepairable.push(`${defName}: definition not loaded`);
      continue;
    }
    for (const w of wls) {
      summary.workloads++;
      const byPath = new Map<string, string[]>();
      for (const [name, inp] of Object.entries(w.inputs)) {
        if (inp.type === "safetensors") {
          byPath.set(inp.path, [...(byPath.get(inp.path) ?? []), name]);
        }
      }
      try {
        for (const [path, names] of byPath) {
          const s = parseInt(sha256(`${seed}:${w.uuid}:${path}`).slice(0, 8), 16);
          const tensors = synthesize(def, w, names, s);
          // Tensor keys follow the workload (tensor_key), normally the input name.
          const keyed: Record<string, RawTensor> = {};
          for (const n of names) {
            keyed[(w.inputs[n] as { tensor_key: string }).tensor_key] = tensors[n];
          }
          const bytes = encodeSafetensors(keyed, {
            provenance: "synthesized by tracepipe extract (original blob unpublished)",
            workload_uuid: w.uuid,
            seed: String(s),
          });
          const dest = join(out, path.replace(/^\.\//, ""));
          mkdirSync(dirname(dest), { recursive: true });
          writeFileSync(dest, bytes);
          summary.blobs++;
          provenance.push({ definition: defName, uuid: w.uuid, blob: path, status: "synthesized" });
        }
        const chk = checkWorkload(def, w, out);
        const { causal, blocking: other } = splitProblems(chk);
        if (causal.length) summary.causalIncompatible.push(`${defName} ${w.uuid}`);
        if (other.length) summary.unrepairable.push(`${defName} ${w.uuid}: ${other.join("; ")}`);
        for (const u of chk.unsupported) unsupported.add(`${defName}: ${u}`);
      } catch (e) {
        summary.unrepairable.push(`${defName} ${w.uuid}: ${(e as Error).message}`);
      }
    }
  }
  summary.unsupportedConstraints = [...unsupported].sort();
  writeFileSync(
    join(out, "provenance.json"),
    JSON.stringify({ synthesized: provenance }, null, 2) + "\n",
  );
  writeFileSync(join(out, "repair-report.json"), JSON.stringify(summary, null, 2) + "\n");
  return summary;
}
