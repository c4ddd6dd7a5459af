/**
 * Shipped runs: the judged results the repository carries (results/<run>/), read like any corpus of
 * results. A run folder holds `run.json` (machine, GPU, toolchain, commit, what it covers) and
 * `cells/<stage>/<cell id>/`, each cell a TraceSet fragment as the store held it (definitions/,
 * solutions/, workloads/, traces/, rejected/, timing.json) with a `cell.json` ({stage, id, key,
 * summary}) naming it. The aggregate reports on each run separately, so no row mixes machines.
 *
 * The cells the report never links (definitions, extract, generate: solution sources, workloads)
 * may travel packed in `cells.tar.xz` beside `cells/`: shipped runs are tracked files, and the whole
 * tracked tree goes with every GPU call (64 MiB with Deno; docs/GPU.md). They unpack once per
 * archive digest into the temporary folder and read like the others. So do the time cells'
 * `timing.json` files (`timings.tar.xz`: the raw samples, most of a run's bytes, which the report does not
 * link either; the cells' traces, which it links, stay in place): a cell read from `cells/` then has a
 * `packedDir`, its folder in the unpacked archive.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { z } from "zod";
import { type CellResult, treeDigest } from "../../pipeline/engine/mod.ts";

/** The stages a run's cells come from, in the registry's order (the order fragments load in). */
export const RUN_STAGES = ["definitions", "extract", "generate", "compile", "verify", "time"];

/** What a run folder's run.json records (unknown fields are kept for the report). */
export const RunMeta = z.object({
  /** The folder's name: `<machine>-<date>`. */
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/),
  /** One line for the report: what this run is. */
  title: z.string(),
  /** ISO date of the judging (YYYY-MM-DD). */
  date: z.string().regex(/^\d{4}-\d{2}-\d{2}$/),
  /** The accelerator that judged it (the traces' `hardware`), or null for a CPU run. */
  gpu: z.string().nullable(),
  machine: z.record(z.string(), z.unknown()).default({}),
  toolchain: z.record(z.string(), z.unknown()).default({}),
  /** Commits: the judging code's and the one whose aggregate produced the shipped report. */
  commit: z.object({ judged: z.string(), aggregated: z.string().optional() }).passthrough(),
  harness: z.record(z.string(), z.unknown()).default({}),
  covers: z.record(z.string(), z.unknown()).default({}),
  /** Numbers measured during the run outside the traces (stage walls, throughput, fidelity). */
  measurements: z.record(z.string(), z.unknown()).default({}),
}).passthrough();
/** Parsed run.json. */
export type RunMeta = z.infer<typeof RunMeta>;

/** One shipped run: its metadata and its cells grouped by stage (the shape of `ctx.upstream`). */
export interface ShippedRun {
  id: string;
  dir: string;
  meta: RunMeta;
  cells: Record<string, ShippedCell[]>;
}

/** A run.json (or cell.json) that cannot be used: one line naming the file, field and reason. */
export class RunFolderError extends Error {}

const CELL_FILE = "cell.json";

/** The archive of a run folder's packed cells (`cells/<stage>/…` inside). */
export const PACKED_CELLS = "cells.tar.xz";
/** The stages whose cells a shipped run packs: the report links none of their files. */
export const PACKED_STAGES = ["definitions", "extract", "generate"];

/** The archive of a run folder's time cells' `timing.json` files (`cells/time/…/timing.json` inside). */
export const PACKED_TIMINGS = "timings.tar.xz";
/** The files of cells left in `cells/` that a shipped run packs into PACKED_TIMINGS. */
export const PACKED_FILES = ["timing.json"];

/** A shipped run's cell: where it lies, and its folder in the unpacked PACKED_TIMINGS if any. */
export type ShippedCell = CellResult & { packedDir?: string };

/**
 * The folder a run's `cells.tar.xz` (or another of its archives, `name`) is unpacked into (holding
 * `cells/`), or null without one. Unpacked once per archive digest: into a staging folder first,
 * renamed into place when whole, so two processes reading the same run never see half an archive.
 */
export function unpackedCells(dir: string, shown = dir, name = PACKED_CELLS): string | null {
  const archive = join(dir, name);
  if (!existsSync(archive)) return null;
  const digest = createHash("sha256").update(readFileSync(archive)).digest("hex");
  const parent = join(tmpdir(), "tracepipe-packed-cells");
  const target = join(parent, digest);
  const done = join(target, ".unpacked");
  if (existsSync(done)) return target;
  mkdirSync(parent, { recursive: true });
  const staging = mkdtempSync(join(parent, "staging-"));
  const r = spawnSync("tar", ["-xJf", archive, "-C", staging], { encoding: "utf8" });
  if (r.status !== 0) {
    rmSync(staging, { recursive: true, force: true });
    const why = (r.error?.message ?? r.stderr ?? "").trim().split("\n")[0];
    throw new RunFolderError(`${join(shown, name)}: cannot unpack (tar -xJf): ${why}`);
  }
  writeFileSync(join(staging, ".unpacked"), digest + "\n");
  try {
    renameSync(staging, target);
  } catch (e) {
    // Another process put the same archive in place first: theirs is as good as ours.
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(done)) throw e;
  }
  return target;
}

/** Parses a run folder's run.json; a bad one throws RunFolderError naming the file and field. */
export function readRunMeta(dir: string, shown = dir): RunMeta {
  const file = join(dir, "run.json");
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new RunFolderError(`${join(shown, "run.json")}: $: ${(e as Error).message}`);
  }
  const r = RunMeta.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    const path = ["$", ...i.path.map((p) => typeof p === "number" ? `[${p}]` : `.${String(p)}`)]
      .join("").replace(/\$\./, "$.");
    throw new RunFolderError(`${join(shown, "run.json")}: ${path}: ${i.message}`);
  }
  return r.data;
}

/**
 * The cells of a run folder: every directory under cells/ holding a cell.json, grouped by stage in
 * the order of `stageOrder` (then by name), each stage's cells sorted by id.
 */
export function readRunCells(
  dir: string,
  stageOrder: string[] = [],
): Record<string, ShippedCell[]> {
  const byStage: Record<string, ShippedCell[]> = {};
  const seen = new Map<string, string>();
  const packed = unpackedCells(dir);
  for (const base of packed ? [dir, packed] : [dir]) {
    const shownBase = base === dir ? "" : PACKED_CELLS + ":";
    walkCells(dir, join(base, "cells"), shownBase, byStage, seen);
  }
  const timings = unpackedCells(dir, dir, PACKED_TIMINGS);
  if (timings) {
    for (const cells of Object.values(byStage)) {
      for (const c of cells) {
        const there = join(timings, "cells", relative(join(dir, "cells"), c.dir));
        if (!c.dir.startsWith(dir + "/cells/") || !existsSync(there)) continue;
        c.packedDir = there;
      }
    }
  }
  const rank = (s: string) => {
    const i = stageOrder.indexOf(s);
    return i < 0 ? stageOrder.length : i;
  };
  const ordered: Record<string, ShippedCell[]> = {};
  for (const s of Object.keys(byStage).sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1))) {
    ordered[s] = byStage[s].sort((a, b) => a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
  }
  return ordered;
}

/**
 * Adds the cells under `root` (a run's cells/, plain or unpacked) to `byStage`; `seen` maps each
 * stage/id to where it was found, so a cell both plain and packed is an error, not read twice.
 */
function walkCells(
  dir: string,
  root: string,
  shownBase: string,
  byStage: Record<string, ShippedCell[]>,
  seen: Map<string, string>,
): void {
  if (!existsSync(root)) return;
  const shownOf = (file: string) => shownBase + relative(shownBase ? join(root, "..") : dir, file);
  const walk = (d: string) => {
    const names = readdirSync(d).sort();
    if (names.includes(CELL_FILE)) {
      const file = join(d, CELL_FILE);
      let c: { stage?: unknown; id?: unknown; key?: unknown; summary?: unknown };
      try {
        c = JSON.parse(readFileSync(file, "utf8"));
      } catch (e) {
        throw new RunFolderError(`${shownOf(file)}: $: ${(e as Error).message}`);
      }
      const rel = relative(root, d).split("/");
      const stage = typeof c.stage === "string" ? c.stage : rel[0];
      const id = typeof c.id === "string" ? c.id : rel.slice(1).join("/");
      const where = seen.get(`${stage}/${id}`);
      if (where) {
        throw new RunFolderError(
          `${shownOf(file)}: $.id: cell ${stage}/${id} is also at ${where} (one place for a cell)`,
        );
      }
      seen.set(`${stage}/${id}`, shownOf(file));
      (byStage[stage] ??= []).push({
        id,
        key: typeof c.key === "string" ? c.key : "",
        digest: "",
        dir: d,
        summary: c.summary ?? null,
      });
      return;
    }
    for (const n of names) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
    }
  };
  walk(root);
}

/**
 * The run folders under `resultsDir` (each with a run.json), sorted by date then id; `shown` names
 * the folder in messages (repo-relative).
 */
export function listShippedRuns(
  resultsDir: string,
  stageOrder: string[] = [],
  shown = "results",
): ShippedRun[] {
  if (!existsSync(resultsDir)) return [];
  const runs: ShippedRun[] = [];
  for (const name of readdirSync(resultsDir).sort()) {
    const dir = join(resultsDir, name);
    if (!statSync(dir).isDirectory() || !existsSync(join(dir, "run.json"))) continue;
    const meta = readRunMeta(dir, join(shown, name));
    if (meta.id !== name) {
      throw new RunFolderError(
        `${
          join("results", name, "run.json")
        }: $.id: "${meta.id}" differs from its folder "${name}"`,
      );
    }
    runs.push({ id: name, dir, meta, cells: readRunCells(dir, stageOrder) });
  }
  return runs.sort((a, b) =>
    a.meta.date < b.meta.date ? -1 : a.meta.date > b.meta.date ? 1 : a.id < b.id ? -1 : 1
  );
}

/** Content digest of each run folder (the aggregate's plan inputs). */
export function runDigests(resultsDir: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(resultsDir)) return out;
  for (const name of readdirSync(resultsDir).sort()) {
    const dir = join(resultsDir, name);
    if (statSync(dir).isDirectory() && existsSync(join(dir, "run.json"))) {
      out[`results/${name}`] = treeDigest(dir);
    }
  }
  return out;
}

/** The newest run judged on a GPU, or null. */
export function newestGpuRun<T extends { meta: { gpu: string | null } }>(runs: T[]): T | null {
  const gpu = runs.filter((r) => r.meta.gpu);
  return gpu.length ? gpu[gpu.length - 1] : null;
}

/** Any run folder (results/<id>/, or a fixture elsewhere): its run.json and cells. */
export function readRunFolder(dir: string, stageOrder: string[] = RUN_STAGES): ShippedRun {
  const meta = readRunMeta(dir);
  return { id: meta.id, dir, meta, cells: readRunCells(dir, stageOrder) };
}
