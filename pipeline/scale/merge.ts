/**
 * `tp slurm --merge`: the shards' stores into one. `tp import` unites a stage's run index with the
 * one the store already has, so a cell of an older run that no shard planned (a solution since
 * dropped from the profile) would stay in it and reach the report. Here every stage the shards ran
 * gets the union of the shards' run indexes instead: exactly what one unsharded run would record.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describeHolder, importStore, mergeRuns, type RunIndex, Store } from "../engine/mod.ts";
import { slurmFiles, type SlurmLayout } from "./slurm_scripts.ts";

/** The exit status a task recorded in a status file, or null (none: the task was killed). */
export function readStatus(path: string): number | null {
  try {
    const text = readFileSync(path, "utf8").trim();
    return /^\d+$/.test(text) ? Number(text) : null;
  } catch {
    return null;
  }
}

/** What merging found of the shards. */
export interface MergeResult {
  /** Shards whose task did not finish (no status, or stopped: 130, 143, …). */
  unfinished: number[];
  /** Shards that finished with failed cells (status 1). */
  failed: number[];
}

/**
 * Imports every shard's store (finished or not: finished cells are never lost) into the layout's
 * store, under its lock, and records as each stage's run the union of the shards' runs.
 */
export async function mergeShards(
  l: SlurmLayout,
  command: string,
  log: (line: string) => void = console.log,
): Promise<MergeResult> {
  const f = slurmFiles(l.dir);
  const into = new Store(l.store);
  const release = await into.lock({
    wait: true,
    command,
    onWait: (h) => console.error(`waiting for the store ${l.store}, held by ${describeHolder(h)}`),
  });
  const result: MergeResult = { unfinished: [], failed: [] };
  try {
    const union = new Map<string, RunIndex>();
    for (let i = 0; i < l.shards; i++) {
      const status = readStatus(join(f.shard(i), "status"));
      if (status === 1) result.failed.push(i);
      else if (status !== 0) result.unfinished.push(i);
      const dir = join(f.shard(i), "store");
      if (!existsSync(join(dir, "runs"))) continue;
      const from = new Store(dir);
      const r = importStore(from, into);
      for (const stage of r.stages) {
        const run = from.readRun(stage)!;
        const seen = union.get(stage);
        union.set(stage, seen ? mergeRuns(seen, run) : run);
      }
      log(`shard ${i} (status ${status ?? "none"}): imported ${r.cells} cells`);
    }
    for (const run of union.values()) into.writeRun(run);
  } finally {
    release();
  }
  return result;
}
