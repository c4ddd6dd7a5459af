/**
 * The content-addressed store. Layout under the store root:
 *
 *   cells/<stage>/<key>/out/…      a finished cell's outputs
 *   cells/<stage>/<key>/cell.json  its record: key document, manifest, summary, provenance
 *   cells/<stage>/<key>/log.txt    what the cell logged
 *   runs/<stage>.json              the cells of the stage's latest run (for status, why, --from)
 *   tmp/                           cells being written; renamed into cells/ when complete
 *   lock                           held by the one run that may write
 *
 * A cell appears in cells/ only through a directory rename, so a killed run never leaves a
 * partial entry; whatever it left in tmp/ is deleted by the next run that takes the lock.
 * Many keys are kept per stage, so reverting a param restores instead of recomputing.
 */
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { hostname } from "node:os";
import { join, relative } from "node:path";
import { digestJson, sha256 } from "./hash.ts";
import type { CellResult } from "./stage.ts";
import { copyDirAtomic, writeFileAtomic } from "./files.ts";

/** One output file of a cell. */
export interface ManifestEntry {
  path: string;
  sha256: string;
  bytes: number;
}

/** What the store keeps beside a cell's outputs. */
export interface CellRecord {
  stage: string;
  id: string;
  key: string;
  keyDocument: Record<string, unknown>;
  /** sha256 over the manifest: the cell's output identity. */
  digest: string;
  manifest: ManifestEntry[];
  summary: unknown;
  provenance: Record<string, unknown>;
}

/** A stage's latest run: its finished cells, and those it could not run here. */
export interface RunIndex {
  stage: string;
  finishedAt: string;
  cells: Array<{ id: string; key: string }>;
  notRunnable: Array<{ id: string; reason: string }>;
  failed: Array<{ id: string; error: string }>;
  /** Key document of every planned cell, for `why`. */
  keyDocuments: Record<string, Record<string, unknown>>;
}

/** Raised when another live process holds the store lock. */
export class StoreLockedError extends Error {}

/** What the lock file records of the run holding it. */
export interface LockHolder {
  pid?: number;
  host?: string;
  startedAt?: string;
  /** The command line of the holding run (`reproduce --from compile`). */
  command?: string;
  /** Tells this holder's lock from another's taken by the same process. */
  token?: string;
}

/** How {@link Store.lock} takes the lock. */
export interface LockOptions {
  /** Wait for a live holder instead of throwing. */
  wait?: boolean;
  pollMs?: number;
  /** What this run is, recorded in the lock file for whoever waits for it. */
  command?: string;
  /** Called while waiting: once at once, then every `progressMs`. */
  onWait?: (holder: LockHolder, waitedMs: number) => void;
  progressMs?: number;
  /** Stops waiting. */
  signal?: AbortSignal;
}

/** `pid 123 on host, `tp reproduce`, started 2025-…`: who holds a lock. */
export function describeHolder(h: LockHolder): string {
  return [
    `pid ${h.pid ?? "?"} on ${h.host ?? "?"}`,
    ...(h.command ? [`\`${h.command}\``] : []),
    `started ${h.startedAt ?? "at an unknown time"}`,
  ].join(", ");
}

/** Lists every file under `dir` with its digest, sorted by path. */
export function manifestOf(dir: string): ManifestEntry[] {
  const out: ManifestEntry[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const bytes = readFileSync(p);
        out.push({ path: relative(dir, p), sha256: sha256(bytes), bytes: bytes.byteLength });
      }
    }
  };
  if (existsSync(dir)) walk(dir);
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

const pidAlive = (pid: number) => {
  try {
    Deno.kill(pid, "SIGCONT");
    return true;
  } catch (e) {
    // EPERM means it exists but is someone else's.
    return e instanceof Deno.errors.PermissionDenied;
  }
};

/**
 * The live holder of the lock file at `path`; null when it is stale (its process on this host is
 * dead, or it has no pid and has been unreadable for 5 s); "gone" when there is no file.
 */
function liveHolder(path: string): LockHolder | null | "gone" {
  let holder: LockHolder = {};
  try {
    holder = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT" || e instanceof Deno.errors.NotFound) {
      return "gone";
    }
    /* being written right now, or garbage: treat as stale below only if still unreadable */
  }
  try {
    const stale = holder.pid === undefined
      ? Date.now() - statSync(path).mtimeMs > 5_000
      : holder.host === hostname() && !pidAlive(holder.pid);
    return stale ? null : holder;
  } catch {
    return "gone";
  }
}

/** The store at `root`. */
export class Store {
  constructor(readonly root: string) {}

  private cellDir(stage: string, key: string) {
    return join(this.root, "cells", stage, key);
  }

  /**
   * One attempt at a lock file at `path`, written as `holder` (pid, host and start filled in): the
   * release function, or the live holder that keeps it. A lock left by a dead process on this host,
   * or one unreadable for 5 s, is stale and taken over. The store lock and the harness's host-wide
   * per-GPU locks share this one discipline; release removes the file only while it is still ours,
   * so two holders in one process (two runs in a test) stay apart.
   */
  static takeLockFile(path: string, holder: LockHolder = {}): (() => void) | LockHolder {
    const me = JSON.stringify(
      {
        pid: Deno.pid,
        host: hostname(),
        startedAt: new Date().toISOString(),
        ...holder,
        token: crypto.randomUUID(),
      } satisfies LockHolder,
    );
    while (true) {
      try {
        writeFileSync(path, me, { flag: "wx" });
        return () => {
          try {
            if (readFileSync(path, "utf8") === me) rmSync(path, { force: true });
          } catch { /* already gone */ }
        };
      } catch (e) {
        if (
          (e as { code?: string }).code !== "EEXIST" && !(e instanceof Deno.errors.AlreadyExists)
        ) throw e;
      }
      const live = liveHolder(path);
      if (live === "gone") continue; // released between our write and our read: try again
      if (live) return live;
      rmSync(path, { force: true }); // stale
    }
  }

  /** Who holds the lock file at `path`: the live holder, or null when it is free or stale. */
  static lockFileHolder(path: string): LockHolder | null {
    const live = liveHolder(path);
    return live === "gone" ? null : live;
  }

  /**
   * Takes the store lock. A lock left by a dead process on this host is taken over; a live one
   * makes this wait (when `wait`) or throw a StoreLockedError naming the holder. While waiting,
   * `onWait` hears who holds the lock at once and then every `progressMs` (default 10 s); an
   * aborted `signal` stops the wait with a StoreLockedError.
   */
  async lock(opts: LockOptions = {}): Promise<() => void> {
    mkdirSync(this.root, { recursive: true });
    const path = join(this.root, "lock");
    const t0 = Date.now();
    let told = -Infinity;
    for (;;) {
      const taken = Store.takeLockFile(path, opts.command ? { command: opts.command } : {});
      if (typeof taken === "function") {
        // We hold the lock: anything in tmp/ belongs to a run that died.
        rmSync(join(this.root, "tmp"), { recursive: true, force: true });
        return taken;
      }
      const holder = taken;
      if (!opts.wait) {
        throw new StoreLockedError(
          `the store ${this.root} is in use by another tracepipe run (${
            describeHolder(holder)
          }); ` +
            "wait for it to finish or pass --wait",
        );
      }
      if (opts.signal?.aborted) {
        throw new StoreLockedError(
          `stopped while waiting for the store ${this.root} (held by ${describeHolder(holder)})`,
        );
      }
      const every = opts.progressMs ?? 10_000;
      const waited = Date.now() - t0;
      if (waited - told >= every) {
        told = waited;
        opts.onWait?.(holder, waited);
      }
      // Wake for the next progress report on time, not up to a poll later.
      const untilReport = every - (Date.now() - t0 - told);
      await new Promise((r) =>
        setTimeout(r, Math.max(1, Math.min(opts.pollMs ?? 500, untilReport)))
      );
    }
  }

  /** The run holding the lock now, or null. */
  lockHolder(): LockHolder | null {
    try {
      return JSON.parse(readFileSync(join(this.root, "lock"), "utf8"));
    } catch {
      return null;
    }
  }

  /** A fresh directory in tmp/ for a cell to write into. */
  tempDir(): string {
    const dir = join(this.root, "tmp", crypto.randomUUID());
    mkdirSync(join(dir, "out"), { recursive: true });
    return dir;
  }

  /** The finished cell with this key, or null. Marks it as recently used (for gc). */
  get(stage: string, key: string): CellResult & { record: CellRecord } | null {
    const dir = this.cellDir(stage, key);
    let record: CellRecord;
    try {
      record = JSON.parse(readFileSync(join(dir, "cell.json"), "utf8"));
    } catch {
      return null;
    }
    try {
      const now = new Date();
      utimesSync(dir, now, now);
    } catch { /* read-only store: fine */ }
    return {
      id: record.id,
      key,
      digest: record.digest,
      dir: join(dir, "out"),
      summary: record.summary,
      record,
    };
  }

  /**
   * Moves a completed temp dir (holding out/ and log.txt) into the store under its key, with its
   * record. Returns the finished cell. If the key already exists (a concurrent writer), keeps that one.
   */
  commit(
    tmpDir: string,
    rec: Omit<CellRecord, "digest" | "manifest">,
  ): CellResult & { record: CellRecord } {
    const manifest = manifestOf(join(tmpDir, "out"));
    const digest = sha256(JSON.stringify(manifest));
    const record: CellRecord = { ...rec, digest, manifest };
    writeFileSync(join(tmpDir, "cell.json"), JSON.stringify(record, null, 2));
    const target = this.cellDir(rec.stage, rec.key);
    mkdirSync(join(this.root, "cells", rec.stage), { recursive: true });
    if (existsSync(target)) rmSync(target, { recursive: true, force: true });
    renameSync(tmpDir, target);
    return {
      id: rec.id,
      key: rec.key,
      digest,
      dir: join(target, "out"),
      summary: rec.summary,
      record,
    };
  }

  /** Records a stage's latest run. */
  writeRun(index: RunIndex): void {
    writeFileAtomic(join(this.root, "runs", `${index.stage}.json`), JSON.stringify(index, null, 2));
  }

  /** The stage's latest run, or null. */
  readRun(stage: string): RunIndex | null {
    try {
      return JSON.parse(readFileSync(join(this.root, "runs", `${stage}.json`), "utf8"));
    } catch {
      return null;
    }
  }

  /** The cells of the stage's latest run, as downstream stages see them (missing ones dropped). */
  lastResults(stage: string): CellResult[] | null {
    const run = this.readRun(stage);
    if (!run) return null;
    return run.cells.map((c) => this.get(stage, c.key)).filter((c) => c !== null).map((c) => ({
      id: c.id,
      key: c.key,
      digest: c.digest,
      dir: c.dir,
      summary: c.summary,
    }));
  }

  /** Every stored cell with its size and last use. */
  entries(): Array<{ stage: string; key: string; dir: string; bytes: number; usedMs: number }> {
    const cells = join(this.root, "cells");
    if (!existsSync(cells)) return [];
    const out = [];
    for (const stage of readdirSync(cells)) {
      for (const key of readdirSync(join(cells, stage))) {
        const dir = join(cells, stage, key);
        const bytes = duBytes(dir);
        out.push({ stage, key, dir, bytes, usedMs: statSync(dir).mtimeMs });
      }
    }
    return out;
  }

  /**
   * Deletes least-recently-used cells until the store fits in `maxBytes`. Cells of each stage's
   * latest run are kept unless `includeLatest`, so the target may stay out of reach: `overBytes`
   * says by how much, and `latest` how much the kept latest-run cells hold.
   */
  gc(maxBytes: number, includeLatest = false): GcResult {
    const entries = this.entries().sort((a, b) => a.usedMs - b.usedMs);
    const protectedKeys = new Set<string>();
    if (!includeLatest) {
      for (const e of entries) {
        const run = this.readRun(e.stage);
        for (const c of run?.cells ?? []) protectedKeys.add(`${e.stage}/${c.key}`);
      }
    }
    let total = entries.reduce((a, e) => a + e.bytes, 0);
    let removed = 0;
    let freed = 0;
    for (const e of entries) {
      if (total <= maxBytes) break;
      if (protectedKeys.has(`${e.stage}/${e.key}`)) continue;
      rmSync(e.dir, { recursive: true, force: true });
      total -= e.bytes;
      freed += e.bytes;
      removed++;
    }
    const latest = entries.filter((e) => protectedKeys.has(`${e.stage}/${e.key}`));
    return {
      removed,
      freedBytes: freed,
      keptBytes: total,
      overBytes: Math.max(0, total - maxBytes),
      latest: { cells: latest.length, bytes: latest.reduce((a, e) => a + e.bytes, 0) },
    };
  }
}

/** What {@link Store.gc} did, and whether the target was reached. */
export interface GcResult {
  removed: number;
  freedBytes: number;
  keptBytes: number;
  /** How far the store still is above the target (0: reached). */
  overBytes: number;
  /** The cells of the latest runs that gc kept (none counted with `includeLatest`). */
  latest: { cells: number; bytes: number };
}

function duBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? duBytes(p) : statSync(p).size;
  }
  return total;
}

/**
 * Imports another store's cells and runs (for example one written on a GPU machine, or a shard of
 * a distributed run). Cells are content-addressed, so copying is idempotent. A stage's run index
 * becomes the union of both, by cell id, the imported one winning where both have a cell.
 */
export function importStore(from: Store, into: Store): { cells: number; stages: string[] } {
  let copied = 0;
  for (const e of from.entries()) {
    const target = join(into.root, "cells", e.stage, e.key);
    if (existsSync(join(target, "cell.json"))) continue;
    copyDirAtomic(e.dir, target, { tmp: into.tempDir() });
    copied++;
  }
  const stages: string[] = [];
  const runsDir = join(from.root, "runs");
  for (const file of existsSync(runsDir) ? readdirSync(runsDir) : []) {
    if (!file.endsWith(".json")) continue;
    const stage = file.slice(0, -5);
    const theirs = from.readRun(stage)!;
    const ours = into.readRun(stage);
    into.writeRun(ours ? mergeRuns(ours, theirs) : theirs);
    stages.push(stage);
  }
  return { cells: copied, stages };
}

/** The accelerator a key document's toolchain names (null: none, a CPU cell or a pure stage's). */
function acceleratorOf(doc: Record<string, unknown> | undefined): string | null {
  const gpu = (doc?.toolchain as { gpu?: { name?: unknown } } | undefined)?.gpu;
  return typeof gpu?.name === "string" ? gpu.name : null;
}

/**
 * Union of two run indexes of one stage, by cell id; `b` wins where both have an id. What `a` says
 * of an id that `b` planned under a different key (changed code, inputs or toolchain) is stale and
 * dropped, even where `b` left that id without a result (not runnable there, or interrupted). So is
 * what `a` judged on an accelerator `b` did not use (a CPU run of another profile beside an imported
 * H100 run): shards and resumed runs of one machine add up, two machines' judgements never mix in
 * one index, where the aggregate would report them as one run.
 */
export function mergeRuns(a: RunIndex, b: RunIndex): RunIndex {
  const theirs = new Set(Object.values(b.keyDocuments).map(acceleratorOf));
  const stale = new Set(
    Object.keys(a.keyDocuments).filter((id) =>
      id in b.keyDocuments
        ? digestJson(a.keyDocuments[id]) !== digestJson(b.keyDocuments[id])
        : theirs.size > 0 && !theirs.has(acceleratorOf(a.keyDocuments[id]))
    ),
  );
  const byId = <T extends { id: string }>(xs: T[], ys: T[]) => {
    const m = new Map(xs.filter((x) => !stale.has(x.id)).map((x) => [x.id, x]));
    for (const y of ys) m.set(y.id, y);
    return [...m.values()].sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  };
  const cells = byId(a.cells, b.cells);
  const done = new Set(cells.map((c) => c.id));
  return {
    stage: b.stage,
    finishedAt: a.finishedAt > b.finishedAt ? a.finishedAt : b.finishedAt,
    cells,
    notRunnable: byId(a.notRunnable, b.notRunnable).filter((n) => !done.has(n.id)),
    failed: byId(a.failed, b.failed).filter((f) => !done.has(f.id)),
    keyDocuments: { ...a.keyDocuments, ...b.keyDocuments },
  };
}
