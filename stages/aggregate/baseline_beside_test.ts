/**
 * A run whose `verify.authors`/`time.authors` leave out the baseline's author still has a baseline:
 * the time stage timed it beside every candidate (timing.json), and aggregate uses those timings.
 * Fixture: tests/fixtures/aggregate/authors_filter, the `basic` run as the pipeline leaves it with
 * `authors: ["alice", "bob"]` (make_authors_filter.ts), so its tables must equal basic's.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import type { Fragment } from "./load.ts";
import { cellBound, sideBaselineLatency } from "./load_derived.ts";
import { AggregateParams } from "./params.ts";
import { runAggregate } from "./stage.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const FILTERED = join(ROOT, "tests/fixtures/aggregate/authors_filter");
const BASIC = join(ROOT, "tests/fixtures/aggregate/basic");

/** The fixture's cells as aggregate's upstream: generate, verify, then each time cell with its summary. */
function filteredFragments(): Fragment[] {
  const out: Fragment[] = [
    { stage: "generate", cellId: "corpus", cellKey: "g", dir: join(FILTERED, "generate") },
    { stage: "verify", cellId: "failures", cellKey: "v", dir: join(FILTERED, "verify") },
  ];
  for (const id of readdirSync(join(FILTERED, "time")).sort()) {
    const dir = join(FILTERED, "time", id);
    const summary = JSON.parse(readFileSync(join(dir, "summary.json"), "utf8"));
    out.push({ stage: "time", cellId: id, cellKey: `t${id}`, dir, summary });
  }
  return out;
}

async function tables(fragments: Fragment[]): Promise<(name: string) => string> {
  const out = mkdtempSync(join(tmpdir(), "agg-beside-"));
  await runAggregate({
    fragments,
    params: AggregateParams.parse({}),
    outDir: out,
    root: ROOT,
    log: () => {},
  });
  const read = new Map<string, string>();
  for (const f of readdirSync(join(out, "tables"))) {
    read.set(f, readFileSync(join(out, "tables", f), "utf8"));
  }
  read.set("index.html", readFileSync(join(out, "index.html"), "utf8"));
  rmSync(out, { recursive: true, force: true });
  return (name) => {
    assert(read.has(name), name);
    return read.get(name)!;
  };
}

Deno.test("authors filter without the baseline's author: the baseline timed beside the candidates is used", async () => {
  // The fixture is what the bug report describes: the baseline has no trace, its timing.json files do.
  assert(!existsSync(join(FILTERED, "time/01/traces/baseline")));
  const filtered = await tables(filteredFragments());
  const basic = await tables([{ stage: "fixture", cellId: "basic", cellKey: "k", dir: BASIC }]);
  const choice = filtered("baseline_choice.md");
  assert(!choice.includes("no baseline solution"), choice.split("\n")[2]);
  assertMatch(choice, /gemm → torch\.matmul \(cuBLAS\) \(timed beside each candidate/);
  assertMatch(
    choice,
    /\| gemm_n4_k4 \| gemm \| 0 \| torch\.matmul \(cuBLAS\) \|.*timed beside candidates \|/,
  );
  // The baseline latencies are the ones its own runs have in `basic` (g3: it failed, so none), so
  // Tables B and C are basic's, row for row.
  for (const t of ["table_b_fast_p.csv", "table_c_win_at_p_leaderboard.csv"]) {
    assertEquals(filtered(t), basic(t), t);
  }
  assert(filtered("table_b_fast_p.csv").split("\n").length > 50, "fast_p is not empty");
  assert(!filtered("index.html").includes("speedups undefined"));
});

Deno.test("a baseline timed beside a candidate: the harness's ratio times the candidate's latency", () => {
  const ev = { performance: { latency_ms: 0.5 } };
  assertEquals(
    sideBaselineLatency({
      evaluation: ev,
      details: { speedup_vs_baseline: 3, baseline: { median_ms: 1.6 } },
    }),
    1.5,
  );
  // No ratio (the candidate failed after the baseline was timed): the baseline's median.
  assertEquals(sideBaselineLatency({ details: { baseline: { median_ms: 1.6 } } }), 1.6);
  assertEquals(
    sideBaselineLatency({ details: { baseline_error: "RUNTIME_ERROR" } as never }),
    null,
  );
});

Deno.test("what bounds a timed cell: host where its host submission took 0.8 of its median or more", () => {
  const timing = (host: unknown, median: unknown) => ({
    details: {
      candidate: { median_ms: median },
      gate: { candidate: { host_submit_median_ms: host } },
    },
  });
  assertEquals(cellBound(timing(0.9, 1)), "host");
  assertEquals(cellBound(timing(0.8, 1)), "host");
  assertEquals(cellBound(timing(0.5, 1)), "device");
  assertEquals(cellBound(timing(0, 1)), "device");
  // Not recorded (a CPU run, a file of before the gate) or nonsense: unknown, not guessed.
  assertEquals(cellBound(timing(undefined, 1)), null);
  assertEquals(cellBound(timing(0.5, 0)), null);
  assertEquals(cellBound({}), null);
});

Deno.test("what bounds a timed cell: the gate's own counts, where it recorded them, decide", () => {
  const timing = (opened: unknown, expired: unknown, host = 0.9) => ({
    details: {
      candidate: { median_ms: 1 },
      gate: {
        candidate: { host_submit_median_ms: host, opened_by_host: opened, hold_expired: expired },
      },
    },
  });
  // A host submission of 0.9 of the median, but the host opened the gate in most samples: device.
  assertEquals(cellBound(timing(84, 0)), "device");
  assertEquals(cellBound(timing(20, 19)), "device");
  assertEquals(cellBound(timing(20, 20)), "device");
  assertEquals(cellBound(timing(14, 52, 0.1)), "host");
  // No counted sample (or counts that are not counts): the host-submission share decides.
  assertEquals(cellBound(timing(0, 0)), "host");
  assertEquals(cellBound(timing(0, 0, 0.5)), "device");
  assertEquals(cellBound(timing(-1, 3, 0.5)), "device");
  assertEquals(cellBound(timing("3", 5, 0.5)), "device");
});
