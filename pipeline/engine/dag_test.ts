import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertRejects } from "../../tests/assert.ts";
import { type AnyStage, runPipeline, type StageReport } from "./dag.ts";
import { dryPlan } from "./status.ts";
import { REPO_ROOT } from "./paths.ts";
import { importStore, mergeRuns, type RunIndex, Store, StoreLockedError } from "./store.ts";
import { FAKE_GPU, FAKE_TOOLCHAIN, letters, shout } from "./testdata/engine_stages.ts";

const STAGES = [letters, shout] as AnyStage[];

function freshStore(): Store {
  return new Store(mkdtempSync(join(tmpdir(), "tp-store-")));
}

function run(
  store: Store,
  items: Record<string, string>,
  extra: Partial<Parameters<typeof runPipeline>[0]> = {},
) {
  return runPipeline({
    root: REPO_ROOT,
    store,
    stages: STAGES,
    rawParams: { letters: { items } },
    toolchain: FAKE_TOOLCHAIN,
    log: () => {},
    ...extra,
  });
}

const ran = (r: Awaited<ReturnType<typeof run>>) =>
  Object.fromEntries(r.reports.map((s) => [s.stage, s.ran]));

Deno.test("a second run with nothing changed does no work", async () => {
  const store = freshStore();
  assertEquals(ran(await run(store, { a: "x", b: "y" })), { letters: 2, shout: 2 });
  const again = await run(store, { a: "x", b: "y" });
  assertEquals(ran(again), { letters: 0, shout: 0 });
  assertEquals(again.reports.map((r) => r.hits), [2, 2]);
  const out = store.lastResults("shout")!;
  assertEquals(out.map((c) => readFileSync(join(c.dir, "value.txt"), "utf8")), ["X!", "Y!"]);
});

Deno.test("changing one param re-runs exactly the cells that depend on it; reverting restores", async () => {
  const store = freshStore();
  await run(store, { a: "x", b: "y" });
  const changed = await run(store, { a: "x", b: "z" });
  assertEquals(ran(changed), { letters: 1, shout: 1 });
  // A downstream-only param touches only downstream cells.
  const suffix = await run(store, { a: "x", b: "z" }, {
    rawParams: { letters: { items: { a: "x", b: "z" } }, shout: { suffix: "?" } },
  });
  assertEquals(ran(suffix), { letters: 0, shout: 2 });
  // Many entries per stage: going back to the first params is all cache hits.
  assertEquals(ran(await run(store, { a: "x", b: "y" })), { letters: 0, shout: 0 });
});

Deno.test("an upstream re-run with identical output does not re-run downstream (early cutoff)", async () => {
  const store = freshStore();
  await run(store, { a: "x" });
  const forced = await run(store, { a: "x" }, { force: ["letters"] });
  assertEquals(ran(forced), { letters: 1, shout: 0 });
});

Deno.test("why names the field that changed since the last run", async () => {
  const store = freshStore();
  await run(store, { a: "x", b: "y" });
  const plan = await dryPlan({
    root: REPO_ROOT,
    store,
    stages: STAGES,
    rawParams: { letters: { items: { a: "x", b: "w" } } },
    toolchain: FAKE_TOOLCHAIN,
  });
  const lettersPlan = plan.find((s) => s.stage === "letters")!;
  assertEquals(lettersPlan.missing, 1);
  const b = lettersPlan.cells.find((c) => c.id === "b")!;
  assertEquals(b.state, "changed");
  assertEquals(b.changes, ['params: "y" -> "w"']);
  assertEquals(lettersPlan.cells.find((c) => c.id === "a")!.state, "same");
  assertEquals(plan.find((s) => s.stage === "shout")!.state, "blocked");
});

Deno.test("bad params name the profile field", async () => {
  await assertRejects(
    () =>
      run(freshStore(), {}, {
        rawParams: { letters: { items: { a: 3 } } },
        paramsSource: "p.json",
      }),
    /p\.json: \$\.letters\.items\.a: /,
  );
});

Deno.test("a bad param of a later stage stops the run before the first stage runs a cell", async () => {
  const store = freshStore();
  await assertRejects(
    () =>
      run(store, {}, {
        rawParams: { letters: { items: { a: "x" } }, shout: { suffix: 7 } },
        paramsSource: "p.json",
      }),
    /p\.json: \$\.shout\.suffix: /,
  );
  assertEquals(store.lastResults("letters"), null);
});

async function spawnChild(store: Store, items: Record<string, string>, hangDir: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join(REPO_ROOT, "pipeline/engine/testdata/engine_child.ts"),
      store.root,
      JSON.stringify(items),
    ],
    env: { TP_TEST_HANG_DIR: hangDir },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Wait until the cell is half-written.
  for (let i = 0; i < 300 && !readdirSync(hangDir).some((f) => f.startsWith("started-")); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert(
    readdirSync(hangDir).some((f) => f.startsWith("started-")),
    "child never reached the cell",
  );
  return child;
}

Deno.test("a run killed with SIGKILL mid-stage leaves no partial entry; the re-run completes", async () => {
  const store = freshStore();
  const hangDir = mkdtempSync(join(tmpdir(), "tp-hang-"));
  const child = await spawnChild(store, { a: "x" }, hangDir);
  child.kill("SIGKILL");
  await child.output();
  const cells = join(store.root, "cells", "letters");
  assertEquals(existsSync(cells) ? readdirSync(cells) : [], [], "no entry for the killed cell");
  assert(readdirSync(join(store.root, "tmp")).length > 0, "the half-written cell is in tmp/");

  // The lock is stale (its pid is dead): the next run takes it over, cleans tmp/ and completes.
  const release = await store.lock();
  try {
    assertEquals(ran(await run(store, { a: "x" })), { letters: 1, shout: 1 });
  } finally {
    release();
  }
  assertEquals(existsSync(join(store.root, "tmp")) ? readdirSync(join(store.root, "tmp")) : [], []);
  const [cell] = store.lastResults("letters")!;
  assertEquals(readdirSync(cell.dir).sort(), ["part1.txt", "value.txt"]);
});

Deno.test("an interrupted run reports its unfinished cells as interrupted, not failed, and records none", async () => {
  const store = freshStore();
  const hangDir = mkdtempSync(join(tmpdir(), "tp-hang-"));
  const child = await spawnChild(store, { a: "x", b: "y" }, hangDir);
  child.kill("SIGINT");
  const out = await child.output();
  const reports = JSON.parse(new TextDecoder().decode(out.stdout)) as StageReport[];
  assertEquals(reports.map((r) => r.stage), ["letters"], "later stages do not run");
  assertEquals(reports[0].failed, []);
  assertEquals(reports[0].interrupted.sort(), ["a", "b"]);
  const index = JSON.parse(readFileSync(join(store.root, "runs", "letters.json"), "utf8"));
  assertEquals([index.cells, index.failed], [[], []]);
  // Nothing was cached for them: the next run does both.
  assertEquals(ran(await run(store, { a: "x", b: "y" })), { letters: 2, shout: 2 });
});

Deno.test("two runs at once: the second refuses with a clear message, or waits with --wait", async () => {
  const store = freshStore();
  const hangDir = mkdtempSync(join(tmpdir(), "tp-hang-"));
  mkdirSync(hangDir, { recursive: true });
  const child = await spawnChild(store, { a: "x" }, hangDir);
  try {
    const err = await assertRejects(
      () => store.lock(),
      /in use by another tracepipe run \(pid \d+/,
    );
    assert(err instanceof StoreLockedError);
    const waiting = store.lock({ wait: true, pollMs: 50 });
    let acquired = false;
    waiting.then(() => (acquired = true));
    await new Promise((r) => setTimeout(r, 300));
    assertEquals(acquired, false, "must wait while the other run holds the lock");
    child.kill("SIGKILL");
    await child.output();
    const release = await waiting;
    assert(acquired);
    release();
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* already dead */ }
  }
});

Deno.test("cells record provenance: key document, inputs, timings, log digest", async () => {
  const store = freshStore();
  await run(store, { a: "x" });
  const [cell] = store.lastResults("letters")!;
  const rec = JSON.parse(readFileSync(join(cell.dir, "..", "cell.json"), "utf8"));
  assertEquals(rec.keyDocument.params, "x");
  assertEquals(rec.keyDocument.stage, "letters");
  assertMatch(rec.keyDocument.code, /^[0-9a-f]{64}$/);
  assert(rec.provenance.timings.wallMs >= 0);
  assertMatch(rec.provenance.logSha256, /^[0-9a-f]{64}$/);
  assertEquals(rec.summary, { length: 1 });
  assertEquals(readFileSync(join(cell.dir, "..", "log.txt"), "utf8"), "wrote x\n");
});

Deno.test("gc removes least-recently-used cells down to the cap, keeping the latest run", async () => {
  const store = freshStore();
  await run(store, { a: "x" });
  await run(store, { a: "y" }); // the "x" cells are now only history
  const before = store.entries().length;
  assertEquals(before, 4);
  const r = store.gc(0);
  assertEquals(r.removed, 2);
  assertEquals(ran(await run(store, { a: "y" })), { letters: 0, shout: 0 });
  assertEquals(store.gc(0, true).removed, 2);
});

Deno.test("--from reuses the last recorded run of upstream stages; a stage never run is a clear error", async () => {
  const store = freshStore();
  await assertRejects(
    () => run(store, { a: "x" }, { from: "shout" }),
    /stage letters has no recorded run/,
  );
  await run(store, { a: "x" });
  const r = await run(store, { a: "x" }, { from: "shout", force: ["shout"] });
  assertEquals(r.reports.map((s) => [s.stage, s.mode, s.ran]), [["letters", "reused", 0], [
    "shout",
    "ran",
    1,
  ]]);
});

Deno.test("import merges another store's cells and unites run indexes by cell id", async () => {
  const here = freshStore();
  const there = freshStore();
  await run(here, { a: "x" });
  await run(there, { b: "y" }); // e.g. a GPU machine that ran other cells of the same stages
  const r = importStore(there, here);
  assertEquals(r.cells, 2);
  assertEquals(r.stages.sort(), ["letters", "shout"]);
  assertEquals(here.lastResults("letters")!.map((c) => c.id), ["a", "b"]);
  // Idempotent: a second import copies nothing and changes nothing.
  assertEquals(importStore(there, here).cells, 0);
  assertEquals(
    here.lastResults("shout")!.map((c) => readFileSync(join(c.dir, "value.txt"), "utf8")),
    ["X!", "Y!"],
  );
});

Deno.test("merging runs drops what the older run says of a cell the newer one planned under another key", () => {
  const index = (
    finishedAt: string,
    docs: Record<string, string>,
    parts: Partial<Pick<RunIndex, "cells" | "notRunnable" | "failed">>,
  ): RunIndex => ({
    stage: "verify",
    finishedAt,
    cells: [],
    notRunnable: [],
    failed: [],
    keyDocuments: Object.fromEntries(Object.entries(docs).map(([id, code]) => [id, { code }])),
    ...parts,
  });
  const older = index("2026-01-01", { x: "v1", y: "v1", z: "v1", w: "v1" }, {
    cells: [{ id: "x", key: "kx1" }, { id: "y", key: "ky1" }, { id: "w", key: "kw1" }],
    failed: [{ id: "z", error: "boom" }],
  });
  // The newer run planned x, y and z under new code: x is not runnable there, y and z were
  // interrupted (no verdict); it planned w under the same key and never reached it.
  const newer = index("2026-01-02", { x: "v2", y: "v2", z: "v2", w: "v1" }, {
    notRunnable: [{ id: "x", reason: "toolchain unavailable" }],
  });
  const merged = mergeRuns(older, newer);
  assertEquals(merged.cells, [{ id: "w", key: "kw1" }], "only the still-valid cell is kept");
  assertEquals(merged.notRunnable, [{ id: "x", reason: "toolchain unavailable" }]);
  assertEquals(merged.failed, [], "a stale failure is dropped too");
  // Runs of the same code (a resumed or sharded run) still add up.
  const shard = index("2026-01-03", { v: "v1" }, { cells: [{ id: "v", key: "kv1" }] });
  assertEquals(mergeRuns(older, shard).cells.map((c) => c.id), ["v", "w", "x", "y"]);
});

Deno.test("merging runs drops what the older run judged on another accelerator, keeps shards of one", () => {
  const on = (gpu: string | null) => ({
    code: "v1",
    toolchain: { gpu: gpu ? { name: gpu } : null },
  });
  const index = (finishedAt: string, docs: Record<string, Record<string, unknown>>): RunIndex => ({
    stage: "verify",
    finishedAt,
    cells: Object.keys(docs).map((id) => ({ id, key: `k-${id}` })),
    notRunnable: [],
    failed: [],
    keyDocuments: docs,
  });
  // A CPU run of another profile, then an H100 run imported: the CPU cells it did not plan go.
  const cpu = index("2026-01-01", { c1: on(null), c2: on(null) });
  const h100 = index("2026-01-02", { g1: on("H100"), g2: on("H100") });
  assertEquals(mergeRuns(cpu, h100).cells.map((c) => c.id), ["g1", "g2"]);
  // Two shards of one H100 run add up.
  const shard = index("2026-01-03", { g3: on("H100") });
  assertEquals(mergeRuns(h100, shard).cells.map((c) => c.id), ["g1", "g2", "g3"]);
  // Cells of a stage with no accelerator in its keys (a pure stage) add up as before.
  assertEquals(mergeRuns(cpu, index("2026-01-04", { c3: on(null) })).cells.length, 3);
});

Deno.test("prewarm: each stage the run includes starts with its params and the GPUs found; others do not", async () => {
  const calls: Array<{ stage: string; params: unknown; gpus: number }> = [];
  const pending: Promise<void>[] = [];
  const watch = (stage: AnyStage) =>
    ({
      ...stage,
      prewarm(params: unknown, gpus: Promise<unknown[]>) {
        pending.push(
          gpus.then((g) => void calls.push({ stage: stage.name, params, gpus: g.length })),
        );
      },
    }) as AnyStage;
  const stages = [watch(letters), watch(shout)];
  await run(freshStore(), { a: "x" }, {
    stages,
    from: "shout",
    toolchain: { ...FAKE_TOOLCHAIN, gpus: [FAKE_GPU] },
  }).catch(() => {/* shout has no recorded letters run here: only the prewarm calls matter */});
  await Promise.all(pending);
  assertEquals(calls, [{ stage: "shout", params: { suffix: "!" }, gpus: 1 }]);
});

Deno.test("a stage whose cells run long says it is alive, naming the longest-running cell", async () => {
  const slow = {
    ...letters,
    name: "slow",
    upstream: [],
    run: async (job: Parameters<NonNullable<typeof letters.run>>[0]) => {
      await new Promise((r) => setTimeout(r, 900));
      Deno.writeTextFileSync(join(job.outDir, "x"), job.plan.id);
    },
  } as AnyStage;
  const lines: string[] = [];
  await runPipeline({
    root: REPO_ROOT,
    store: freshStore(),
    stages: [slow],
    rawParams: { slow: { items: { a: "x" } } },
    toolchain: FAKE_TOOLCHAIN,
    log: (l) => lines.push(l),
    heartbeatMs: 200,
  });
  const beat = lines.find((l) => l.includes("still running"));
  assertMatch(
    beat,
    /^\[slow\] still running: 0\/1 cells done; 1 running, the longest a \(\d+ s\)$/,
  );
});
