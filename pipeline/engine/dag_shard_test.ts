import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertEquals } from "../../tests/assert.ts";
import { type AnyStage, type CellFilter, runPipeline } from "./dag.ts";
import { REPO_ROOT } from "./paths.ts";
import { importStore, Store } from "./store.ts";
import { FAKE_TOOLCHAIN, letters, shout } from "./testdata/engine_stages.ts";

const ITEMS = { a: "x", b: "y", c: "z", d: "w" };

const freshStore = () => new Store(mkdtempSync(join(tmpdir(), "tp-shard-")));

/** Runs letters → shout; with a filter taking the cells whose id is in `ids`. */
async function run(store: Store, ids?: string[]) {
  const lines: string[] = [];
  const cellFilter: CellFilter | undefined = ids && {
    label: `ids ${ids.join(",")}`,
    admits: (_stage, id) => ids.includes(id),
  };
  const r = await runPipeline({
    root: REPO_ROOT,
    store,
    stages: [letters, shout] as AnyStage[],
    rawParams: { letters: { items: ITEMS } },
    toolchain: FAKE_TOOLCHAIN,
    log: (l) => lines.push(l),
    cellFilter,
  });
  return { ...r, lines };
}

/** A stage's latest run as `id → key`, and the ids its key documents cover. */
function runOf(store: Store, stage: string) {
  const r = store.readRun(stage)!;
  return {
    cells: Object.fromEntries(r.cells.map((c) => [c.id, c.key])),
    documented: Object.keys(r.keyDocuments).sort(),
  };
}

Deno.test("a cell filter runs and records only the cells it admits, downstream too", async () => {
  const store = freshStore();
  const r = await run(store, ["a", "c"]);
  assertEquals(r.reports.map((s) => [s.stage, s.planned, s.ran]), [["letters", 2, 2], [
    "shout",
    2,
    2,
  ]]);
  assertEquals(r.lines.filter((l) => l.includes("ids a,c")), [
    "[letters] ids a,c: 2 of 4 cells",
  ]);
  for (const stage of ["letters", "shout"]) {
    assertEquals(Object.keys(runOf(store, stage).cells).sort(), ["a", "c"], stage);
    // The key documents of the cells left to other runs are not recorded either: an import would
    // otherwise take them for stale versions of those runs' cells.
    assertEquals(runOf(store, stage).documented, ["a", "c"], stage);
  }
});

Deno.test("runs that split the cells, imported into one store, equal one run of them all", async () => {
  const whole = freshStore();
  await run(whole);
  const merged = freshStore();
  for (const ids of [["a", "d"], ["b"], ["c"]]) {
    const part = freshStore();
    await run(part, ids);
    importStore(part, merged);
  }
  for (const stage of ["letters", "shout"]) {
    assertEquals(runOf(merged, stage), runOf(whole, stage), stage);
    assertEquals(merged.readRun(stage)!.keyDocuments, whole.readRun(stage)!.keyDocuments, stage);
  }
  const digests = (s: Store) => s.lastResults("shout")!.map((c) => [c.id, c.digest]);
  assertEquals(digests(merged), digests(whole));
});
