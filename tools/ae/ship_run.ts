/**
 * Ships a judged run into results/<id>/: copies, from a store's latest runs, what the aggregate
 * reads of each cell (definitions, solutions, workloads without their blobs, traces, rejected
 * solutions, timing.json, provenance.json, the sweep index), one folder per cell with a cell.json
 * ({stage, id, key, summary}), and writes run.json from the template given.
 *
 *   deno run -A tools/ae/ship_run.ts --store DIR --run-json FILE [--out results]
 *       [--traces-from DIR]   verify/time traces from a published reports/traces/ folder instead
 *
 * `--run-json` holds what no store knows (machine, driver, commits, stage walls); its `id` names the
 * folder. An existing folder of that id is refused: a shipped run is never overwritten.
 *
 * The cells the report links none of (definitions, extract, generate) are packed into the folder's
 * `cells.tar.xz`, and the time cells' `timing.json` (raw samples, unlinked too) into `timings.tar.xz`
 * (stages/aggregate/runs.ts reads both): they are most of a run's bytes, and every tracked byte
 * travels with each GPU call (docs/GPU.md).
 *
 *   deno run -A tools/ae/ship_run.ts --pack results/<id>   packs a run folder shipped unpacked
 */
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { spawnSync } from "node:child_process";
import { join, relative } from "node:path";
import { parseArgs } from "node:util";
import { type CellResult, REPO_ROOT, Store } from "../../pipeline/engine/mod.ts";
import {
  PACKED_CELLS,
  PACKED_FILES,
  PACKED_STAGES,
  PACKED_TIMINGS,
} from "../../stages/aggregate/mod.ts";

/** The stages whose cells the aggregate reads (its upstream). */
export const SHIPPED_STAGES = ["definitions", "extract", "generate", "compile", "verify", "time"];
/** What of a cell is shipped: folders copied whole (blob/ is left out) and single files. */
const FOLDERS = ["definitions", "solutions", "workloads", "traces", "rejected"];
const FILES = ["timing.json", "provenance.json", "sweep-index.json"];

/** Copies one cell's fragment into `dest`; returns false (and copies nothing) when it has none. */
export function shipCell(stage: string, cell: CellResult, dest: string): boolean {
  const present = [...FOLDERS, ...FILES].filter((n) => existsSync(join(cell.dir, n)));
  if (!present.length) return false;
  mkdirSync(dest, { recursive: true });
  for (const n of present) {
    if (n === "timing.json") {
      // The harness writes its raw samples indented; shipped runs are tracked files that travel with
      // every GPU call (64 MiB in all, docs/GPU.md), so they are kept compact: same data, a third less.
      const timing = JSON.parse(readFileSync(join(cell.dir, n), "utf8"));
      writeFileSync(join(dest, n), JSON.stringify(timing) + "\n");
      continue;
    }
    // Workloads are shipped without their safetensors blobs (extract regenerates them).
    cpSync(join(cell.dir, n), join(dest, n), {
      recursive: true,
      filter: (src) => !relative(cell.dir, src).split("/").includes("blob"),
    });
  }
  const doc = { stage, id: cell.id, key: cell.key, summary: cell.summary ?? null };
  writeFileSync(join(dest, "cell.json"), JSON.stringify(doc, null, 2) + "\n");
  return true;
}

/**
 * Cells of a published reports/traces/<stage>/<cell id>/traces/ tree (the report's copy of the
 * judging cells' traces), for a run whose store is gone.
 */
export function cellsFromPublishedTraces(dir: string, stage: string): CellResult[] {
  const root = join(dir, stage);
  const out: CellResult[] = [];
  const walk = (d: string) => {
    const names = readdirSync(d).sort();
    if (names.includes("traces")) {
      out.push({ id: relative(root, d), key: "", digest: "", dir: d, summary: null });
      return;
    }
    for (const n of names) walk(join(d, n));
  };
  if (existsSync(root)) walk(root);
  return out;
}

/**
 * Packs what of a run folder the report links none of: its cells of PACKED_STAGES into cells.tar.xz
 * (removed from cells/), and the PACKED_FILES of the cells left (the time cells' timing.json) into
 * timings.tar.xz (removed too). Each archive is reproducible (names sorted, owners and times fixed)
 * and made only where it is missing, so a run packed before timings.tar.xz existed gets that one
 * alone. Returns what was packed (nothing, for a folder packed already).
 */
export function packRunCells(runDir: string): string[] {
  const packed: string[] = [];
  if (!existsSync(join(runDir, PACKED_CELLS))) {
    const stages = PACKED_STAGES.filter((s) => existsSync(join(runDir, "cells", s)));
    if (stages.length) {
      tarXz(runDir, PACKED_CELLS, stages.map((s) => `cells/${s}`));
      for (const s of stages) rmSync(join(runDir, "cells", s), { recursive: true });
      packed.push(...stages.map((s) => `${s} (${PACKED_CELLS})`));
    }
  }
  if (!existsSync(join(runDir, PACKED_TIMINGS))) {
    const files = packableFiles(runDir);
    if (files.length) {
      tarXz(runDir, PACKED_TIMINGS, files);
      for (const f of files) rmSync(join(runDir, f));
      packed.push(`${files.length} ${PACKED_FILES.join(", ")} (${PACKED_TIMINGS})`);
    }
  }
  return packed;
}

/** The PACKED_FILES under a run folder's cells/, relative to the folder, sorted. */
function packableFiles(runDir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (PACKED_FILES.includes(e.name)) out.push(relative(runDir, p));
    }
  };
  if (existsSync(join(runDir, "cells"))) walk(join(runDir, "cells"));
  return out.sort();
}

/** Writes `runDir/name`, an xz tar of `paths` (relative to runDir), reproducibly; throws on failure. */
function tarXz(runDir: string, name: string, paths: string[]): void {
  const archive = join(runDir, name);
  const tar = spawnSync("bash", [
    "-o",
    "pipefail",
    "-c",
    'd=$1; n=$2; shift 2; printf "%s\\0" "$@" | tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$d" --null -T - -cf - | xz -9 -T1 >"$d/.packing" && mv "$d/.packing" "$d/$n"',
    "bash",
    runDir,
    name,
    ...paths,
  ], { encoding: "utf8" });
  if (tar.status !== 0 || !existsSync(archive)) {
    throw new Error(`${archive}: tar | xz failed: ${(tar.stderr ?? "").trim()}`);
  }
}

function main(args: string[]): number {
  const { values } = parseArgs({
    args,
    options: {
      store: { type: "string" },
      "run-json": { type: "string" },
      out: { type: "string", default: join(REPO_ROOT, "results") },
      "traces-from": { type: "string" },
      pack: { type: "string" },
    },
  });
  if (values.pack) {
    if (!existsSync(join(values.pack, "run.json"))) {
      console.error(`${values.pack}: no run.json there (a run folder: run.json and cells/)`);
      return 2;
    }
    try {
      const packed = packRunCells(values.pack);
      if (!packed.length) {
        console.error(`${values.pack}: nothing left to pack; this run is packed already`);
        return 2;
      }
      console.log(`${values.pack}: packed ${packed.join(", ")}`);
      return 0;
    } catch (e) {
      console.error((e as Error).message);
      return 2;
    }
  }
  if (!values.store || !values["run-json"]) {
    console.error("usage: ship_run.ts --store DIR --run-json FILE [--out DIR] [--traces-from DIR]");
    return 2;
  }
  const meta = JSON.parse(readFileSync(values["run-json"], "utf8"));
  if (typeof meta.id !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(meta.id)) {
    console.error(`${values["run-json"]}: $.id: a folder name is required (machine-date)`);
    return 2;
  }
  const runDir = join(values.out!, meta.id);
  if (existsSync(runDir)) {
    console.error(`${runDir}: exists; a shipped run is never overwritten (pick another id)`);
    return 2;
  }
  const store = new Store(values.store);
  let n = 0;
  for (const stage of SHIPPED_STAGES) {
    const fromTraces = values["traces-from"] && (stage === "verify" || stage === "time");
    const cells = fromTraces
      ? cellsFromPublishedTraces(values["traces-from"]!, stage)
      : store.lastResults(stage) ?? [];
    for (const c of cells) {
      if (shipCell(stage, c, join(runDir, "cells", stage, c.id))) n++;
    }
  }
  const packed = packRunCells(runDir);
  writeFileSync(join(runDir, "run.json"), JSON.stringify(meta, null, 2) + "\n");
  console.log(
    `shipped ${n} cells into ${runDir} (packed: ${
      packed.join(", ") || "nothing"
    }); write its README.md (what is missing, and why)`,
  );
  return 0;
}

if (import.meta.main) Deno.exit(main(Deno.args));
