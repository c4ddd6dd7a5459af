/**
 * The dry plan behind `status` and `why`: every stage planned and keyed without running anything,
 * each cell's key compared with the last run's field by field, so `why` can say which param,
 * input, code file or toolchain fact changed.
 */
import { digestJson } from "./hash.ts";
import { builderInfo } from "./provenance.ts";
import type { CellResult } from "./stage.ts";
import { discoverToolchain } from "./toolchain.ts";
import { type PipelineOptions, type PlannedStage, planStage } from "./dag.ts";

/** One cell's planned key compared with the last run's. */
export interface CellDiff {
  id: string;
  state: "same" | "changed" | "new" | "not-runnable";
  /** Top-level key fields that differ, with a short description of each change. */
  changes: string[];
}

/** The dry plan of one stage for `status` and `why`. */
export interface StageStatus {
  stage: string;
  /** "planned" when its upstream is known; "blocked" when an upstream stage will re-run first. */
  state: "planned" | "blocked" | "error";
  cells: CellDiff[];
  missing: number;
  lastRun: string | null;
  note?: string;
}

function describeChange(field: string, before: unknown, after: unknown): string[] {
  if (
    before && after && typeof before === "object" && typeof after === "object" &&
    !Array.isArray(before) && !Array.isArray(after)
  ) {
    const b = before as Record<string, unknown>;
    const a = after as Record<string, unknown>;
    const out: string[] = [];
    for (const k of [...new Set([...Object.keys(b), ...Object.keys(a)])].sort()) {
      if (digestJson(b[k] ?? null) !== digestJson(a[k] ?? null)) {
        out.push(...describeChange(`${field}.${k}`, b[k], a[k]));
      }
    }
    return out;
  }
  const show = (v: unknown) => {
    const s = v === undefined ? "(absent)" : JSON.stringify(v);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  };
  return [`${field}: ${show(before)} -> ${show(after)}`];
}

/** Compares two key documents field by field. */
export function diffKeyDocuments(
  before: Record<string, unknown>,
  after: Record<string, unknown>,
): string[] {
  return describeChange("key", before, after).map((s) => s.replace(/^key\./, ""));
}

/**
 * Plans every stage without running anything. A stage whose upstream has cells that would re-run
 * cannot be planned (its inputs are not known yet) and is reported as blocked.
 */
export async function dryPlan(opts: PipelineOptions): Promise<StageStatus[]> {
  const tc = opts.toolchain ?? await discoverToolchain();
  const builder = await builderInfo(opts.root);
  const results: Record<string, CellResult[]> = {};
  const dirty = new Set<string>();
  const out: StageStatus[] = [];
  for (const stage of opts.stages) {
    const prev = opts.store.readRun(stage.name);
    const blockers = stage.upstream.filter((u) => dirty.has(u) || !results[u]);
    if (blockers.length) {
      dirty.add(stage.name);
      out.push({
        stage: stage.name,
        state: "blocked",
        cells: [],
        missing: 0,
        lastRun: prev?.finishedAt ?? null,
        note: `waits for ${blockers.join(", ")} to re-run`,
      });
      continue;
    }
    const upstream = Object.fromEntries(stage.upstream.map((u) => [u, results[u]]));
    let planned: PlannedStage;
    try {
      planned = await planStage(stage, upstream, { ...opts, log: () => {} }, tc, builder);
    } catch (e) {
      dirty.add(stage.name);
      out.push({
        stage: stage.name,
        state: "error",
        cells: [],
        missing: 0,
        lastRun: prev?.finishedAt ?? null,
        note: (e as Error).message,
      });
      continue;
    }
    const cells: CellDiff[] = [];
    const finished: CellResult[] = [];
    let missing = 0;
    for (const p of planned.plans) {
      const { key, doc } = planned.keys.get(p.id)!;
      if (p.notRunnable) {
        cells.push({ id: p.id, state: "not-runnable", changes: [p.notRunnable] });
        continue;
      }
      const hit = opts.store.get(stage.name, key);
      if (hit) finished.push(hit);
      else missing++;
      const before = prev?.keyDocuments?.[p.id];
      if (!before) cells.push({ id: p.id, state: hit ? "same" : "new", changes: [] });
      else {
        const changes = diffKeyDocuments(before, doc);
        cells.push({ id: p.id, state: changes.length || !hit ? "changed" : "same", changes });
      }
    }
    if (missing) dirty.add(stage.name);
    results[stage.name] = finished;
    out.push({
      stage: stage.name,
      state: "planned",
      cells,
      missing,
      lastRun: prev?.finishedAt ?? null,
    });
  }
  return out;
}
