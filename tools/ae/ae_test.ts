/**
 * The artifact-evaluation scripts' own logic: the pure-stage manifest check, ae:full's comparison
 * of a re-judged run with a shipped one (on fixture runs, through the real report), ship_run.
 */
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, Store } from "../../pipeline/engine/mod.ts";
import { writeFixtureRun } from "../../stages/aggregate/testdata/fixture_run.ts";
import { reportHere } from "../../tests/report.ts";
import { digestDiffs, pureDigests } from "./kick.ts";
import { compareWithShipped, main as fullMain, measuredSpread } from "./full.ts";
import { packRunCells, shipCell } from "./ship_run.ts";
import { readRunFolder } from "../../stages/aggregate/mod.ts";

Deno.test("kick: a pure cell whose digest changed, went missing or is new is named", () => {
  const want = {
    "collect/a": "1".repeat(64),
    "extract/b": "2".repeat(64),
    "generate/c": "3".repeat(64),
  };
  const got = {
    "collect/a": "1".repeat(64),
    "extract/b": "9".repeat(64),
    "generate/d": "4".repeat(64),
  };
  assertEquals(digestDiffs(want, got), [
    `extract/b: ${"9".repeat(16)} (manifest ${"2".repeat(16)})`,
    "generate/c: not produced",
    "generate/d: not in the manifest",
  ]);
  assertEquals(digestDiffs(want, { ...want }), []);
});

Deno.test("kick: the committed pure-stage manifest is what the pure stages produce from this tree", async () => {
  // A kernel source or a pure stage changed without `deno task ae:kick --update-manifest` leaves
  // results/pure-stages.json stale, and an artifact evaluator's ae:kick then fails.
  const store = mkdtempSync(join(tmpdir(), "tp-pure-"));
  try {
    const o = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "pipeline/cli.ts",
        "reproduce",
        "--to",
        "generate",
        "--store",
        store,
      ],
      cwd: REPO_ROOT,
      stdout: "null",
      stderr: "piped",
    }).output();
    assertEquals(o.code, 0, new TextDecoder().decode(o.stderr).slice(-1500));
    const want = JSON.parse(readFileSync(join(REPO_ROOT, "results", "pure-stages.json"), "utf8"));
    assertEquals(
      digestDiffs(want.cells, pureDigests(new Store(store))),
      [],
      "results/pure-stages.json is stale: run `deno task ae:kick --update-manifest`",
    );
  } finally {
    rmSync(store, { recursive: true, force: true });
  }
});

Deno.test("ae:full compares within the run-to-run p90 a shipped run measured, per kind of cell where it has both", () => {
  assertEquals(
    measuredSpread({
      run_to_run: { p90_pct: 3.1, device_bound: { p90_pct: 2.6 }, host_bound: { p90_pct: 15 } },
    }),
    { device: 2.6, host: 15 },
  );
  assertEquals(
    measuredSpread({ run_to_run: { p90_pct: 3.1, host_bound: { p90_pct: 15 } } }),
    15,
  );
  assertEquals(measuredSpread({ run_to_run: { p90_pct: 3.1 } }), 3.1);
  assertEquals(measuredSpread({}), null);
});

/**
 * A repository root holding one shipped fixture run (and, with `newer`, a later one whose cells are
 * scaled by it) and this machine's report over `scale`d cells.
 */
async function judgedHere(scale: number, newer?: number): Promise<string> {
  const root = mkdtempSync(join(tmpdir(), "ae-full-"));
  for (const p of ["claims.json", "data/paper-figures.json"]) {
    mkdirSync(join(root, p, ".."), { recursive: true });
    cpSync(join(REPO_ROOT, p), join(root, p));
  }
  writeFixtureRun(join(root, "results"), "fake-2026-01-01", {
    gpu: "FakeGPU",
    extra: { measurements: { run_to_run: { p90_pct: 10 } } },
  });
  if (newer !== undefined) {
    writeFixtureRun(join(root, "results"), "fake-2026-02-01", {
      gpu: "FakeGPU",
      date: "2026-02-01",
      scale: newer,
      extra: { measurements: { run_to_run: { p90_pct: 10 } } },
    });
  }
  const here = writeFixtureRun(join(root, "scratch"), "here", { gpu: "FakeGPU", scale });
  const gpu = {
    index: 0,
    name: "FakeGPU",
    uuid: "u",
    driver: "1",
    computeCapability: "9.0",
    memoryMiB: 1,
  };
  await reportHere(root, here, [gpu]);
  return root;
}

Deno.test("ae:full on fixture runs: a re-judged run within the shipped run's spread is reproduced", async () => {
  const root = await judgedHere(1.05);
  try {
    const r = compareWithShipped(root, { maxOutside: 0.1 });
    assert(!("error" in r));
    assertMatch(
      r.lines[0],
      /^== each cell's median against fake-2026-01-01 \(±10 %: its measured spread\)$/,
    );
    assertMatch(
      r.lines[1],
      /^compared 19 cells with fake-2026-01-01: 19 within ±10 % or 0\.5 µs, 0 outside, 0 with another verdict; 0 only/,
    );
    assertEquals(r.reproduced, true);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("ae:full on fixture runs: cells 50 % slower are listed and the run is not reproduced", async () => {
  const root = await judgedHere(1.5);
  try {
    const r = compareWithShipped(root, { maxOutside: 0.1 });
    assert(!("error" in r));
    assertMatch(
      r.lines.join("\n"),
      /OUTSIDE {2}gemm_n4_k4 g1 alice_cuda_gemm_1: PASSED 2 ms -> PASSED 3 ms \(\+50 %\)/,
    );
    assertEquals(r.reproduced, false);
    const wide = compareWithShipped(root, { tolerance: 60, maxOutside: 0.1 });
    assert(!("error" in wide) && wide.reproduced);
    const none = compareWithShipped(join(root, "nowhere"), { maxOutside: 0.1 });
    assert("error" in none && /no shipped GPU run|missing/.test(none.error));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("ae:full --against: the named shipped run is the one compared with, an unknown one is one line", async () => {
  // This machine's cells equal the newer shipped run's and are 50 % slower than the older one's.
  const root = await judgedHere(1.5, 1.5);
  try {
    const newest = compareWithShipped(root, { maxOutside: 0.1 });
    assert(!("error" in newest) && newest.reproduced);
    assertMatch(newest.lines[0], /against fake-2026-02-01 /);
    const older = compareWithShipped(root, { maxOutside: 0.1, against: "fake-2026-01-01" });
    assert(!("error" in older));
    assertMatch(older.lines[0], /against fake-2026-01-01 /);
    assertEquals(older.reproduced, false);
    const unknown = compareWithShipped(root, { maxOutside: 0.1, against: "nope" });
    assert("error" in unknown);
    assertEquals(
      unknown.error,
      "--against nope: no shipped GPU run of that id (fake-2026-01-01, fake-2026-02-01)",
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

Deno.test("ship_run: a cell's fragment is copied without its blobs, with a cell.json and timing.json compact; an empty cell is not", () => {
  const src = mkdtempSync(join(tmpdir(), "ship-src-"));
  const dest = mkdtempSync(join(tmpdir(), "ship-dest-"));
  try {
    for (
      const p of [
        "workloads/gemm/g.jsonl",
        "blob/workloads/gemm/x.safetensors",
        "timing.json",
        "log.txt",
      ]
    ) {
      mkdirSync(join(src, p, ".."), { recursive: true });
      writeFileSync(join(src, p), "x");
    }
    const timing = { details: { candidate: [0.5, 0.25] }, evaluation: { status: "PASSED" } };
    writeFileSync(join(src, "timing.json"), JSON.stringify(timing, null, 2));
    const cell = { id: "a/b", key: "k1", digest: "d", dir: src, summary: { n: 1 } };
    assert(shipCell("extract", cell, join(dest, "a")));
    assert(existsSync(join(dest, "a/workloads/gemm/g.jsonl")));
    assertEquals(readFileSync(join(dest, "a/timing.json"), "utf8"), JSON.stringify(timing) + "\n");
    assertEquals(existsSync(join(dest, "a/blob")), false);
    assertEquals(existsSync(join(dest, "a/log.txt")), false);
    assertEquals(JSON.parse(readFileSync(join(dest, "a/cell.json"), "utf8")), {
      stage: "extract",
      id: "a/b",
      key: "k1",
      summary: { n: 1 },
    });
    const empty = mkdtempSync(join(tmpdir(), "ship-empty-"));
    assertEquals(shipCell("verify", { ...cell, dir: empty }, join(dest, "e")), false);
    rmSync(empty, { recursive: true });
  } finally {
    for (const d of [src, dest]) rmSync(d, { recursive: true, force: true });
  }
});

Deno.test("ship_run --pack: definitions, extract and generate cells into cells.tar.xz, time cells' timing.json into timings.tar.xz; both read the same", () => {
  const results = mkdtempSync(join(tmpdir(), "ship-pack-"));
  try {
    const dir = writeFixtureRun(results, "p-run", { gpu: "G" });
    for (const stage of ["definitions", "generate", "time"]) {
      const cell = join(dir, "cells", stage, "c1");
      mkdirSync(join(cell, "traces"), { recursive: true });
      writeFileSync(join(cell, "cell.json"), JSON.stringify({ stage, id: "c1", key: "k" }));
      writeFileSync(join(cell, "traces", "t.jsonl"), "{}\n");
    }
    const timing = join(dir, "cells", "time", "c1", "timing.json");
    writeFileSync(timing, '{"solution":"s"}');
    const before = readRunFolder(dir).cells;
    assertEquals(packRunCells(dir), [
      "definitions (cells.tar.xz)",
      "generate (cells.tar.xz)",
      "1 timing.json (timings.tar.xz)",
    ]);
    assert(existsSync(join(dir, "cells.tar.xz")) && existsSync(join(dir, "timings.tar.xz")));
    assertEquals(existsSync(join(dir, "cells", "generate")), false);
    // The time cell stays where the report links its traces; only its timing.json travels packed.
    assertEquals(existsSync(timing), false);
    assert(existsSync(join(dir, "cells", "time", "c1", "traces", "t.jsonl")));
    const after = readRunFolder(dir).cells;
    assertEquals(Object.keys(after), Object.keys(before));
    assertEquals(after.generate.map((c) => [c.id, c.key]), [["c1", "k"]]);
    assertEquals(after.time[0].dir, join(dir, "cells", "time", "c1"));
    assertEquals(
      readFileSync(join(after.time[0].packedDir!, "timing.json"), "utf8"),
      '{"solution":"s"}',
    );
    // A packed run is not packed again over itself.
    assertEquals(packRunCells(dir), []);
  } finally {
    rmSync(results, { recursive: true, force: true });
  }
});

Deno.test("ae:full: a number option that is not a number is one line and exit 2, before any judging", async () => {
  const errors: string[] = [];
  const error = console.error;
  console.error = (...a: unknown[]) => errors.push(a.join(" "));
  try {
    for (const [opt, v] of [["--floor-us", "half"], ["--tolerance", "=3"], ["--max-outside", ""]]) {
      errors.length = 0;
      assertEquals(await fullMain(["--compare-only", `${opt}=${v}`]), 2);
      assertEquals(errors, [`error: ${opt} ${v}: expected a number of at least 0`]);
    }
    // a value that looks like an option: node's parser refuses it, in one line
    errors.length = 0;
    assertEquals(await fullMain(["--compare-only", "--tolerance", "-3"]), 2);
    assertEquals(errors.length, 1);
    assertMatch(errors[0], /^error: Option '--tolerance' argument is ambiguous/);
  } finally {
    console.error = error;
  }
});
