/**
 * Writes the decode grid as a TraceSet fragment: the definitions its points use (the dataset's, and
 * those it lacks generated from its own, decode_definitions.ts), one workload per point with its safetensors index blob, and
 * `characterization.json`, the grid's manifest that aggregate's characterization section reads
 * (which workload is which point, what was left out and why). Every workload is checked by the
 * project's one workload checker before the cell finishes.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { canonicalJson, sha256, writeFileAtomic } from "../../pipeline/engine/mod.ts";
import { rng } from "../../pipeline/lib/mod.ts";
import {
  CHARACTERIZATION_FILE,
  type Definition,
  definitionPath,
  formatDefinition,
  type ManifestPoint,
} from "../../pipeline/trace/mod.ts";
import type { DefinitionWorkloads } from "./build.ts";
import {
  decodeGrid,
  type DroppedPoint,
  type GridName,
  type GridPoint,
  HEAD_CONFIGS,
} from "./decode_grid.ts";
import { generateDecodeDefinition, templateFor } from "./decode_definitions.ts";
import { buildWorkload } from "./workloads.ts";
import { writeAndCheckWorkloads } from "./write.ts";

/** The params of the grid (extract's `characterization` params). */
export interface GridParams {
  grid: GridName;
  max_kv_bytes: number;
  seed: number;
}

/** The manifest: every point with its workload's uuid, and the points left out. */
export interface CharacterizationManifest {
  version: 1;
  grid: GridName;
  max_kv_bytes: number;
  seed: number;
  configs: typeof HEAD_CONFIGS;
  points: ManifestPoint[];
  dropped: DroppedPoint[];
  /** Definitions generated here, and the dataset's that some points use as they are. */
  generated: string[];
  dataset: string[];
}

/** What the cell's summary records. */
export interface GridSummary {
  kind: "characterization";
  grid: GridName;
  workloads: number;
  dropped: number;
  generated: string[];
  dataset: string[];
}

/**
 * The index tensors of one point: `batch` sequences of `kvLen` tokens each, on pages drawn in a
 * seeded random order from a pool of exactly the pages they use (so kv_indices is a permutation of
 * 0..num_pages-1, scattered as in a serving engine's pool, not laid out sequence by sequence).
 */
export function gridIndexTensors(
  batch: number,
  kvLen: number,
  pageSize: number,
  seed: number,
): { kvIndptr: number[]; kvIndices: number[]; lastLen: number[]; numPages: number } {
  const perSeq = Math.ceil(kvLen / pageSize);
  const numPages = batch * perSeq;
  const rand = rng(seed);
  const pages = Array.from({ length: numPages }, (_, i) => i);
  for (let i = numPages - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [pages[i], pages[j]] = [pages[j], pages[i]];
  }
  const kvIndptr = Array.from({ length: batch + 1 }, (_, b) => b * perSeq);
  const last = kvLen - (perSeq - 1) * pageSize;
  return { kvIndptr, kvIndices: pages, lastLen: new Array(batch).fill(last), numPages };
}

/** The definitions the grid's points need: the dataset's where it has one, else generated. */
export function gridDefinitions(
  points: GridPoint[],
  upstream: ReadonlyMap<string, Definition>,
): { defs: Map<string, Definition>; generated: string[]; dataset: string[] } {
  const defs = new Map<string, Definition>();
  const generated: string[] = [], dataset: string[] = [];
  for (const p of points) {
    if (defs.has(p.definition)) continue;
    const own = upstream.get(p.definition);
    if (own) {
      defs.set(p.definition, own);
      dataset.push(p.definition);
      continue;
    }
    const tName = templateFor(p.page_size);
    const template = upstream.get(tName);
    if (!template) {
      throw new Error(
        `extract: characterization: template definition ${tName} is not among the definitions ` +
          `(the definitions stage's roots or op_types leave it out)`,
      );
    }
    const config = HEAD_CONFIGS.find((c) => c.id === p.config)!;
    defs.set(p.definition, generateDecodeDefinition(template, config, p.head_dim, p.page_size));
    generated.push(p.definition);
  }
  return { defs, generated: generated.sort(), dataset: dataset.sort() };
}

/** Builds and writes the grid into `out`; returns the cell's summary. */
export function writeDecodeGrid(
  upstream: ReadonlyMap<string, Definition>,
  out: string,
  p: GridParams,
): GridSummary {
  const { points, dropped } = decodeGrid(p.grid, p.max_kv_bytes);
  const { defs, generated, dataset } = gridDefinitions(points, upstream);
  // The dataset's definitions too, so the fragment validates on its own (a shipped run's cell).
  for (const def of defs.values()) {
    writeFileAtomic(join(out, definitionPath(def)), formatDefinition(def));
  }
  const byDef = new Map<string, DefinitionWorkloads>();
  const withUuid: CharacterizationManifest["points"] = [];
  for (const pt of points) {
    const def = defs.get(pt.definition)!;
    const seed = parseInt(
      sha256(canonicalJson([p.seed, pt.definition, pt.batch_size, pt.kv_len])).slice(0, 8),
      16,
    );
    const t = gridIndexTensors(pt.batch_size, pt.kv_len, pt.page_size, seed);
    const ints: Record<string, number[]> = { kv_indptr: t.kvIndptr, kv_indices: t.kvIndices };
    if ("kv_last_page_len" in def.inputs) ints.kv_last_page_len = t.lastLen;
    const built = buildWorkload(
      def,
      {
        batch_size: pt.batch_size,
        num_pages: t.numPages,
        len_indptr: pt.batch_size + 1,
        num_kv_indices: t.kvIndices.length,
      },
      ints,
      {
        sm_scale: 1 / Math.sqrt(pt.head_dim),
        routed_scaling_factor: 1,
        local_expert_offset: 0,
        topK: 1,
        topP: 1,
      },
      { source: "tracepipe extract: decode characterization grid", config: pt.config },
    );
    const e = byDef.get(def.name) ?? { def, built: new Map() };
    e.built.set(built.workload.uuid, built);
    byDef.set(def.name, e);
    withUuid.push({ ...pt, uuid: built.workload.uuid });
  }
  const written = writeAndCheckWorkloads(byDef, out);
  const manifest: CharacterizationManifest = {
    version: 1,
    grid: p.grid,
    max_kv_bytes: p.max_kv_bytes,
    seed: p.seed,
    configs: HEAD_CONFIGS,
    points: withUuid,
    dropped,
    generated,
    dataset,
  };
  writeFileSync(join(out, CHARACTERIZATION_FILE), JSON.stringify(manifest, null, 1) + "\n");
  return {
    kind: "characterization",
    grid: p.grid,
    workloads: written.workloads,
    dropped: dropped.length,
    generated,
    dataset,
  };
}
