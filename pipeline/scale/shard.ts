/**
 * Shards: `reproduce --shard I/N` runs a deterministic 1/N of the judging stages' cells, so N
 * machines that never talk to each other split one run between them and `tp import` of their N
 * stores gives the cells of one unsharded run.
 *
 * Which shard takes a cell depends only on its id, never on its key: a verify cell's key holds its
 * compile cell's output digest, known only once that cell ran, in whichever shard ran it. The unit
 * of the split is the (definition, solution) pair, the first two segments of every judging cell's
 * id (compile `def/sol`, verify and time `def/sol/workload`): a solution's compile cell, its verify
 * cells and its time cells land in one shard, so no shard needs another's results. The stages before
 * the judging stages are pure and run whole in every shard (identical cells, identical keys); the
 * stages after them (apply, aggregate) need every shard's cells and run once, after the import.
 */
import { type CellFilter, PipelineError, sha256 } from "../engine/mod.ts";

/** The stages whose cells are split between shards. */
export const JUDGING_STAGES = ["compile", "verify", "time"];

/** Shard `index` of `count` (0 ≤ index < count). */
export interface Shard {
  index: number;
  count: number;
}

/** Reads `--shard I/N` (0 ≤ I < N); a bad value is a usage error naming the option. */
export function parseShard(text: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = m ? Number(m[1]) : NaN, count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index >= count) {
    throw new PipelineError(
      `--shard: expected I/N with 0 <= I < N (e.g. 0/4, as $SLURM_ARRAY_TASK_ID/N), got "${text}"`,
    );
  }
  return { index, count };
}

/** What a judging cell is assigned by: its (definition, solution), the first two id segments. */
export function shardUnit(cellId: string): string {
  return cellId.split("/").slice(0, 2).join("/");
}

/** The shard (0 … count-1) that takes a judging cell: a hash of its unit, so every shard agrees. */
export function shardOf(cellId: string, count: number): number {
  return parseInt(sha256(shardUnit(cellId)).slice(0, 12), 16) % count;
}

/** The engine's cell filter for one shard: its share of the judging stages, every other cell. */
export function shardFilter(shard: Shard): CellFilter {
  return {
    label: `shard ${shard.index}/${shard.count}`,
    admits: (stage, id) =>
      !JUDGING_STAGES.includes(stage) || shardOf(id, shard.count) === shard.index,
  };
}

/**
 * What `reproduce --shard I/N` changes in a run: the cell filter, and the last stage, which is the
 * last judging stage (a later one given by `--to` or `--only` would see one shard's cells only).
 */
export function shardedRun(
  text: string | undefined,
  stageNames: string[],
  sel: { to?: string; only?: string[] },
): { to?: string; cellFilter?: CellFilter } {
  if (text === undefined) return { to: sel.to };
  const shard = parseShard(text);
  const last = JUDGING_STAGES[JUDGING_STAGES.length - 1];
  const after = stageNames.slice(stageNames.indexOf(last) + 1);
  const late = [sel.to, ...(sel.only ?? [])].find((s) => s !== undefined && after.includes(s));
  if (late) {
    throw new PipelineError(
      `--shard: ${late} needs every shard's cells; run it after importing the shards ` +
        `(tp import STORE…, then reproduce --from ${after[0]})`,
    );
  }
  return { to: sel.to ?? last, cellFilter: shardFilter(shard) };
}
