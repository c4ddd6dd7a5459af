import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertThrows } from "../../tests/assert.ts";
import { runCli } from "../../tests/cli.ts";
import {
  type CellFilter,
  discoverToolchain,
  importStore,
  PipelineError,
  REPO_ROOT,
  runPipeline,
  Store,
} from "../engine/mod.ts";
import { closeSharedSessions } from "../harness/mod.ts";
import { loadStages, STAGE_NAMES } from "../../stages/mod.ts";
import { JUDGING_STAGES, parseShard, shardedRun, shardFilter, shardOf } from "./mod.ts";
import { compareStores } from "./testdata/compare.ts";

Deno.test("--shard reads I/N with 0 <= I < N and names the option when it cannot", () => {
  assertEquals(parseShard("0/1"), { index: 0, count: 1 });
  assertEquals(parseShard("2/3"), { index: 2, count: 3 });
  for (const bad of ["3/3", "1/0", "-1/3", "1", "a/b", "1/3/5", ""]) {
    const e = assertThrows(
      () => parseShard(bad),
      /^--shard: expected I\/N with 0 <= I < N .*got "/,
    );
    assert(e instanceof PipelineError, bad);
  }
});

/** Cell ids shaped as the judging stages plan them, over many definitions and solutions. */
function judgingIds(): Record<string, string[]> {
  const pairs = [];
  for (let d = 0; d < 7; d++) {
    for (let s = 0; s < 23; s++) pairs.push(`def_${d}/sol_${(s * 7919) % 1000}`);
  }
  const workloads = ["0b1c", "9f3e-aa", "uuid-3"];
  const verify = pairs.flatMap((p) => workloads.map((w) => `${p}/${w}`));
  return { compile: pairs, verify, time: verify.filter((_, i) => i % 2 === 0) };
}

Deno.test("shards are disjoint and complete for several N, a solution's cells in one shard", () => {
  const ids = judgingIds();
  for (const n of [1, 2, 3, 4, 7, 16]) {
    const filters: CellFilter[] = [...Array(n).keys()].map((i) =>
      shardFilter({ index: i, count: n })
    );
    for (const stage of JUDGING_STAGES) {
      for (const id of ids[stage]) {
        const takers = filters.filter((f) => f.admits(stage, id)).length;
        assertEquals(takers, 1, `N=${n}: ${stage} ${id} taken by ${takers} shards`);
        // Its solution's compile cell is in the same shard: no shard needs another's results.
        const compileId = id.split("/").slice(0, 2).join("/");
        assertEquals(shardOf(id, n), shardOf(compileId, n), `N=${n}: ${id}`);
      }
    }
    // Every shard takes every cell of the other stages (they are pure and identical everywhere).
    for (const f of filters) assert(f.admits("generate", "corpus/x") && f.admits("extract", "m"));
    // Some balance: with 161 solutions, no shard of up to 7 is empty or takes twice its share.
    if (n <= 7) {
      const sizes = filters.map((f) => ids.compile.filter((id) => f.admits("compile", id)).length);
      assert(sizes.every((s) => s > 0 && s <= 2 * ids.compile.length / n), `N=${n}: ${sizes}`);
    }
  }
});

Deno.test("a sharded run stops after the judging stages; a later stage is refused by name", () => {
  assertEquals(shardedRun(undefined, STAGE_NAMES, { to: "verify" }), { to: "verify" });
  const r = shardedRun("1/2", STAGE_NAMES, {});
  assertEquals(r.to, "time");
  assertEquals(r.cellFilter!.label, "shard 1/2");
  assertEquals(shardedRun("0/2", STAGE_NAMES, { to: "compile" }).to, "compile");
  for (const sel of [{ to: "aggregate" }, { only: ["verify", "apply"] }]) {
    const e = assertThrows(
      () => shardedRun("0/2", STAGE_NAMES, sel),
      /^--shard: (aggregate|apply) needs every shard's cells; run it after/,
    );
    assert(e instanceof PipelineError);
  }
});

Deno.test("reproduce --shard with a bad value: one line, exit 2", async () => {
  const { code, text } = await runCli(["reproduce", "--shard", "3/3"]);
  assertEquals(code, 2, text);
  assertEquals(text.trim().split("\n").length, 1, text);
  assertMatch(text, /^error: --shard: expected I\/N/);
});

const tc = await discoverToolchain();
const noTorch = tc.python?.torch ? null : "no Python with torch (apt-get install python3-torch)";
if (noTorch) console.log(`skipping the sharded CPU run: ${noTorch}`);

/** The scale tests' CPU profile (pipeline/scale/testdata/cpu.json). */
export const CPU_PROFILE = join(REPO_ROOT, "pipeline/scale/testdata/cpu.json");

Deno.test({
  name: "N shards of a CPU profile, imported into one store, equal one unsharded run (N = 2, 3)",
  ignore: noTorch !== null,
  async fn() {
    const stages = await loadStages(new Set(STAGE_NAMES.slice(0, STAGE_NAMES.indexOf("time") + 1)));
    const rawParams = JSON.parse(readFileSync(CPU_PROFILE, "utf8"));
    const made: string[] = [];
    const temp = (prefix: string) => {
      made.push(mkdtempSync(join(tmpdir(), prefix)));
      return made.at(-1)!;
    };
    const run = async (cellFilter?: CellFilter) => {
      const store = new Store(temp("tp-shard-"));
      const r = await runPipeline({
        root: REPO_ROOT,
        store,
        stages,
        rawParams,
        paramsSource: CPU_PROFILE,
        to: "time",
        toolchain: tc,
        cellFilter,
        log: () => {},
      });
      assert(r.ok, JSON.stringify(r.reports.map((x) => [x.stage, x.failed])));
      return store;
    };
    try {
      const whole = await run();
      assertEquals(whole.readRun("time")!.cells.length > 0, true, "the profile times something");
      for (const n of [2, 3]) {
        const merged = new Store(temp("tp-merged-"));
        for (let i = 0; i < n; i++) {
          importStore(await run(shardFilter({ index: i, count: n })), merged);
        }
        const stagesRun = STAGE_NAMES.slice(0, STAGE_NAMES.indexOf("time") + 1);
        assertEquals(compareStores(merged, whole, stagesRun, JUDGING_STAGES), [], `N=${n}`);
      }
      for (const d of made) rmSync(d, { recursive: true, force: true });
    } finally {
      await closeSharedSessions();
    }
  },
});
