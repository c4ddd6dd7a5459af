/**
 * Turns the chosen shapes into workloads. Attention workloads need the page tables of the batch
 * the shape was recorded in, which only a replay of the simulation has: each collect cell is
 * replayed once, capturing the chosen iterations, and the replay must reproduce the recorded shape.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { CellResult } from "../../pipeline/engine/mod.ts";
import type { Definition } from "../../pipeline/trace/mod.ts";
import { type BatchEntry, runSimulation, type SimConfig } from "../../pipeline/serving/mod.ts";
import { isAttention } from "./families.ts";
import type { SimSummary } from "./candidates.ts";
import type { ChosenShape } from "./choose.ts";
import { attentionTensors, buildWorkload, type Built, type Scalars } from "./workloads.ts";

/** One replayed batch: whether it decoded, and its requests with their pages trimmed to use. */
interface CapturedBatch {
  decode: boolean;
  entries: BatchEntry[];
}

/** Replayed batches keyed `<cell index>:<iteration>`. */
export type Captures = Map<string, CapturedBatch>;

/** The workloads of one definition, keyed by uuid (so equal workloads collapse into one). */
export interface DefinitionWorkloads {
  def: Definition;
  built: Map<string, Built>;
}

const readSimConfig = (sim: CellResult) =>
  JSON.parse(readFileSync(join(sim.dir, "config.json"), "utf8")) as SimConfig;

/** Replays each collect cell once (in cell order), capturing the chosen attention iterations. */
export function replayChosenIterations(
  root: string,
  sims: CellResult[],
  picks: ChosenShape[],
  log: (m: string) => void,
): Captures {
  const need = new Map<number, Set<number>>();
  for (const pk of picks) {
    if (!isAttention(pk.family)) continue;
    need.set(pk.cand.cell, (need.get(pk.cand.cell) ?? new Set()).add(pk.cand.iter));
  }
  const captured: Captures = new Map();
  for (const [ci, iters] of [...need].sort((a, b) => a[0] - b[0])) {
    const cfg = readSimConfig(sims[ci]);
    const t0 = performance.now();
    runSimulation(root, cfg, (iter, decode, entries) => {
      if (!iters.has(iter)) return;
      captured.set(`${ci}:${iter}`, {
        decode,
        entries: entries.map((e) => ({
          ...e,
          pages: Array.prototype.slice.call(e.pages, 0, Math.ceil(e.kv / cfg.engine.pageSize)),
        })),
      });
    });
    log(
      `replayed ${sims[ci].id} for ${iters.size} iterations in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s`,
    );
  }
  return captured;
}

/** Builds every chosen shape's workload, grouped by definition name in pick order. */
export function buildChosenWorkloads(
  sims: CellResult[],
  picks: ChosenShape[],
  captured: Captures,
): Map<string, DefinitionWorkloads> {
  const byDef = new Map<string, DefinitionWorkloads>();
  for (const pk of picks) {
    const sim = sims[pk.cand.cell];
    const s = sim.summary as SimSummary;
    const cfg = readSimConfig(sim);
    const scalars: Scalars = {
      sm_scale: s.smScale,
      routed_scaling_factor: s.routedScalingFactor,
      local_expert_offset: 0,
      topK: cfg.engine.topK,
      topP: cfg.engine.topP,
    };
    const prov = { source: "tracepipe-collect", cell: sim.id, iteration: String(pk.cand.iter) };
    let built: Built;
    if (isAttention(pk.family)) {
      built = buildAttentionWorkload(pk, sim, captured, scalars, prov);
    } else {
      const m = pk.cand.key[0];
      built = buildWorkload(pk.def, { M: m, batch_size: m, seq_len: m }, {}, scalars, prov);
    }
    const e = byDef.get(pk.def.name) ?? { def: pk.def, built: new Map() };
    e.built.set(built.workload.uuid, built);
    byDef.set(pk.def.name, e);
  }
  return byDef;
}

/** An attention workload whose index tensors come from the replayed batch of the chosen shape. */
function buildAttentionWorkload(
  pk: ChosenShape,
  sim: CellResult,
  captured: Captures,
  scalars: Scalars,
  prov: Record<string, string>,
): Built {
  const cap = captured.get(`${pk.cand.cell}:${pk.cand.iter}`);
  if (!cap) {
    throw new Error(`extract: replay of ${sim.id} did not reach iteration ${pk.cand.iter}`);
  }
  const t = attentionTensors(cap.entries, (sim.summary as SimSummary).pageSize);
  const bs = cap.entries.length;
  const totalQ = t.qoIndptr[bs], totalKv = t.kvTokIndptr[bs];
  // The replay must reproduce the recorded event exactly (guards determinism).
  if (
    bs !== pk.cand.key[0] || Math.round(totalKv / bs) !== pk.cand.key[1] ||
    Math.round(totalQ / bs) !== pk.cand.key[2]
  ) {
    throw new Error(
      `extract: replay of ${sim.id} iteration ${pk.cand.iter} differs from its recorded event`,
    );
  }
  // Ragged prefill addresses KV by token, paged kernels by page.
  const ints: Record<string, number[]> = pk.family.includes("ragged")
    ? { qo_indptr: t.qoIndptr, kv_indptr: t.kvTokIndptr }
    : {
      qo_indptr: t.qoIndptr,
      kv_indptr: t.kvIndptr,
      kv_indices: t.kvIndices,
      kv_last_page_len: t.lastLen,
    };
  return buildWorkload(
    pk.def,
    {
      batch_size: bs,
      len_indptr: bs + 1,
      total_q: totalQ,
      total_kv: totalKv,
      num_kv_indices: t.kvIndices.length,
      num_pages: t.numPages,
    },
    ints,
    scalars,
    prov,
  );
}
