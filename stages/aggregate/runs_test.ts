/**
 * Shipped run folders: found by their run.json, cells by their cell.json, in the registry's stage
 * order; a run.json that cannot be used stops the aggregate with one line naming file and field.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/assert.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PipelineError } from "../../pipeline/engine/mod.ts";
import { listShippedRuns, readRunCells, runDigests, RunFolderError } from "./runs.ts";
import { AggregateParams } from "./params.ts";
import { aggregateStage } from "./stage.ts";
import { writeFixtureRun } from "./testdata/fixture_run.ts";

function withResults(f: (root: string, results: string) => Promise<void> | void) {
  const root = mkdtempSync(join(tmpdir(), "runs-"));
  const results = join(root, "results");
  mkdirSync(results);
  return Promise.resolve(f(root, results)).finally(() =>
    rmSync(root, { recursive: true, force: true })
  );
}

Deno.test("run folders: sorted by date, cells grouped by stage in registry order, digests per run", () =>
  withResults((_root, results) => {
    writeFixtureRun(results, "b-run", { gpu: "G", date: "2026-01-01" });
    writeFixtureRun(results, "a-run", { gpu: null, date: "2026-02-01" });
    mkdirSync(join(results, "not-a-run"));
    const runs = listShippedRuns(results);
    assertEquals(runs.map((r) => r.id), ["b-run", "a-run"]);
    const extra = join(results, "b-run", "cells", "definitions", "all");
    mkdirSync(extra, { recursive: true });
    writeFileSync(join(extra, "cell.json"), JSON.stringify({ stage: "definitions", id: "all" }));
    const cells = readRunCells(join(results, "b-run"), ["definitions", "fixture"]);
    assertEquals(Object.keys(cells), ["definitions", "fixture"]);
    assertEquals(cells.fixture.map((c) => c.id), ["basic"]);
    assertEquals(Object.keys(runDigests(results)), ["results/a-run", "results/b-run"]);
  }));

Deno.test("a run.json that cannot be used is one line naming the file, the field and the reason", () =>
  withResults(async (root, results) => {
    const dir = writeFixtureRun(results, "bad-run", { gpu: "G" });
    writeFileSync(
      join(dir, "run.json"),
      JSON.stringify({
        id: "bad-run",
        title: "t",
        date: "06/12/2026",
        gpu: null,
        commit: { judged: "x" },
      }),
    );
    const e = assertThrows(() => listShippedRuns(results));
    assert(e instanceof RunFolderError);
    assertEquals(e.message.split("\n").length, 1);
    assertEquals(e.message.startsWith("results/bad-run/run.json: $.date: "), true, e.message);
    writeFileSync(
      join(dir, "run.json"),
      JSON.stringify({
        id: "other",
        title: "t",
        date: "2026-01-01",
        gpu: null,
        commit: { judged: "x" },
      }),
    );
    // The stage stops with the same line (the CLI prints it and exits 2).
    const ctx = {
      params: AggregateParams.parse({}),
      root,
      upstream: {},
      toolchain: { os: "linux", arch: "x86_64", deno: "x", gpus: [] },
      env: {},
      log: () => {},
    };
    const err = await assertRejects(
      () => aggregateStage.plan(ctx),
      /^results\/bad-run\/run\.json: \$\.id: "other" differs from its folder "bad-run"$/,
    );
    assert(err instanceof PipelineError);
  }));

/** Packs `cells/<stages>` of `dir` into its cells.tar.xz with tar and xz, as tools/ae/ship_run.ts does. */
function pack(dir: string, stages: string[]): void {
  const r = new Deno.Command("bash", {
    args: [
      "-o",
      "pipefail",
      "-c",
      `tar -C "${dir}" -cf - ${stages.join(" ")} | xz >"${dir}/cells.tar.xz"`,
    ],
  }).outputSync();
  assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
}

Deno.test("packed cells: cells.tar.xz reads like cells/; a cell in both places or a broken archive is one line", () =>
  withResults((_root, results) => {
    const dir = writeFixtureRun(results, "p-run", { gpu: "G", date: "2026-01-01" });
    const defs = join(dir, "cells", "definitions", "all");
    mkdirSync(defs, { recursive: true });
    writeFileSync(join(defs, "cell.json"), JSON.stringify({ stage: "definitions", id: "all" }));
    const plain = readRunCells(dir, ["definitions", "fixture"]);
    pack(dir, ["cells/definitions"]);
    // Both places: refused, naming the archive and the cell.
    let e = assertThrows(() => readRunCells(dir, ["definitions", "fixture"]));
    assert(e instanceof RunFolderError);
    assertEquals(
      e.message,
      "cells.tar.xz:cells/definitions/all/cell.json: $.id: cell definitions/all is also at cells/definitions/all/cell.json (one place for a cell)",
    );
    rmSync(join(dir, "cells", "definitions"), { recursive: true });
    const packed = readRunCells(dir, ["definitions", "fixture"]);
    assertEquals(Object.keys(packed), Object.keys(plain));
    assertEquals(packed.fixture, plain.fixture);
    assertEquals(packed.definitions.map((c) => c.id), ["all"]);
    assert(!packed.definitions[0].dir.startsWith(dir), "unpacked outside the run folder");
    // A second read reuses the unpacked folder (one per archive digest).
    assertEquals(readRunCells(dir).definitions[0].dir, packed.definitions[0].dir);
    writeFileSync(join(dir, "cells.tar.xz"), "not an archive");
    e = assertThrows(() => listShippedRuns(results));
    assert(e instanceof RunFolderError);
    assertEquals(e.message.split("\n").length, 1);
    assert(
      e.message.startsWith(`${join(dir, "cells.tar.xz")}: cannot unpack (tar -xJf): `),
      e.message,
    );
  }));
