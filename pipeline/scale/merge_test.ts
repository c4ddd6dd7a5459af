import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertEquals } from "../../tests/assert.ts";
import { type AnyStage, importStore, REPO_ROOT, runPipeline, Store } from "../engine/mod.ts";
import { FAKE_TOOLCHAIN, letters, shout } from "../engine/testdata/engine_stages.ts";
import { mergeShards, slurmFiles, type SlurmLayout } from "./mod.ts";

const run = (store: Store, items: Record<string, string>, ids?: string[]) =>
  runPipeline({
    root: REPO_ROOT,
    store,
    stages: [letters, shout] as AnyStage[],
    rawParams: { letters: { items } },
    toolchain: FAKE_TOOLCHAIN,
    log: () => {},
    cellFilter: ids && { label: ids.join(","), admits: (_s, id) => ids.includes(id) },
  });

const ITEMS = { a: "x", b: "y", c: "z", d: "w" };
const ids = (s: Store, stage: string) => s.readRun(stage)!.cells.map((c) => c.id).sort();

/** Two shards' stores in a `tp slurm` folder, with the given statuses (null: none). */
async function shardedFolder(statuses: Array<string | null>): Promise<SlurmLayout> {
  const dir = mkdtempSync(join(tmpdir(), "tp-merge-"));
  const parts = [["a", "c"], ["b", "d"]];
  for (const [i, part] of parts.entries()) {
    const shard = slurmFiles(dir).shard(i);
    await run(new Store(join(shard, "store")), ITEMS, part);
    if (statuses[i] !== null) writeFileSync(join(shard, "status"), `${statuses[i]}\n`);
  }
  const store = join(dir, "store");
  mkdirSync(store);
  return {
    dir,
    store,
    repo: REPO_ROOT,
    shards: parts.length,
    gpusPerTask: 0,
    sbatchArgs: [],
    reproduceArgs: [],
  };
}

Deno.test("merging shards records one run's cells, dropping what an older run left", async () => {
  const l = await shardedFolder(["0", "0"]);
  // The store last ran with an item since dropped: `tp import` would keep its cells in the runs.
  await run(new Store(l.store), { ...ITEMS, gone: "g" });
  const imported = new Store(mkdtempSync(join(tmpdir(), "tp-merge-")));
  await run(imported, { ...ITEMS, gone: "g" });
  for (let i = 0; i < 2; i++) {
    importStore(new Store(join(slurmFiles(l.dir).shard(i), "store")), imported);
  }
  assertEquals(ids(imported, "shout"), ["a", "b", "c", "d", "gone"]);

  assertEquals(await mergeShards(l, "test", () => {}), { unfinished: [], failed: [] });
  const merged = new Store(l.store);
  const whole = new Store(mkdtempSync(join(tmpdir(), "tp-merge-")));
  await run(whole, ITEMS);
  for (const stage of ["letters", "shout"]) {
    assertEquals(ids(merged, stage), ["a", "b", "c", "d"], stage);
    assertEquals(merged.readRun(stage)!.cells, whole.readRun(stage)!.cells, stage);
    assertEquals(merged.readRun(stage)!.keyDocuments, whole.readRun(stage)!.keyDocuments, stage);
  }
});

Deno.test("merging names the shards that did not finish and those with failed cells", async () => {
  assertEquals(await mergeShards(await shardedFolder([null, "1"]), "test", () => {}), {
    unfinished: [0],
    failed: [1],
  });
  // A shard stopped by SIGTERM (143) is unfinished; its finished cells are merged all the same.
  const l = await shardedFolder(["143", "0"]);
  assertEquals((await mergeShards(l, "test", () => {})).unfinished, [0]);
  assertEquals(ids(new Store(l.store), "letters"), ["a", "b", "c", "d"]);
});
