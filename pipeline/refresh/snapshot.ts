/**
 * Dated snapshots and the `latest` pointer. A night is assembled in a staging folder beside the
 * snapshots; only when everything is written is it renamed to its dated name, and only then is
 * `latest` moved, by renaming a new symbolic link over the old one (atomic on POSIX): a reader
 * sees the last good snapshot or the new one, never a half-written one, and a failed night leaves
 * the last good one published. Snapshots are never rewritten: a second night on the same date is
 * `<date>-2`. Files equal to the previous snapshot's are hard links to them, so an unchanged
 * night costs almost no disk.
 */
import {
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
} from "node:fs";
import { join, relative } from "node:path";

/** The name of the pointer to the last good snapshot. */
export const LATEST = "latest";
const STAGING_PREFIX = ".staging-";

/** A published snapshot. */
export interface SnapshotRef {
  name: string;
  dir: string;
}

/** The snapshot `latest` points at, or null (none yet, or a dangling link). */
export function latestSnapshot(root: string): SnapshotRef | null {
  const link = join(root, LATEST);
  try {
    if (!lstatSync(link).isSymbolicLink()) return null;
  } catch {
    return null;
  }
  const name = readlinkSync(link);
  const dir = join(root, name);
  return existsSync(dir) ? { name, dir } : null;
}

/** A fresh staging folder for a night (removed by the caller when the night fails). */
export function newStaging(root: string): string {
  mkdirSync(root, { recursive: true });
  const dir = join(
    root,
    `${STAGING_PREFIX}${new Date().toISOString().replace(/[:.]/g, "-")}-${Deno.pid}`,
  );
  mkdirSync(dir);
  return dir;
}

/** Staging folders of nights that died without cleaning up (older than an hour): removed. */
export function removeStaleStaging(root: string): void {
  if (!existsSync(root)) return;
  for (const name of readdirSync(root)) {
    if (!name.startsWith(STAGING_PREFIX)) continue;
    const p = join(root, name);
    if (Date.now() - statSync(p).mtimeMs > 3600_000) rmSync(p, { recursive: true, force: true });
  }
}

/** The first free snapshot name for `date` (YYYY-MM-DD): the date, else `<date>-2`, `-3`, … */
export function snapshotName(root: string, date: string): string {
  if (!existsSync(join(root, date))) return date;
  for (let i = 2;; i++) if (!existsSync(join(root, `${date}-${i}`))) return `${date}-${i}`;
}

/** Moves `latest` to `name` atomically: a new link renamed over the old one. */
export function pointLatest(root: string, name: string): void {
  const tmp = join(root, `.${LATEST}-${Deno.pid}-${Date.now()}`);
  try {
    unlinkSync(tmp);
  } catch { /* not there */ }
  symlinkSync(name, tmp); // relative: the snapshots folder can move as a whole
  renameSync(tmp, join(root, LATEST));
}

/**
 * Publishes the staging folder as snapshot `name` and points `latest` at it. Both steps are
 * renames; until the second, `latest` still names the previous good snapshot.
 */
export function publishSnapshot(root: string, staging: string, name: string): SnapshotRef {
  const dir = join(root, name);
  renameSync(staging, dir);
  pointLatest(root, name);
  return { name, dir };
}

/** Every file under `dir`, as paths relative to it. */
function filesUnder(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    const p = rel ? join(rel, e.name) : e.name;
    if (e.isDirectory()) out.push(...filesUnder(dir, p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

const sameBytes = (a: string, b: string) => {
  const sa = statSync(a), sb = statSync(b);
  if (sa.size !== sb.size) return false;
  if (sa.ino === sb.ino && sa.dev === sb.dev) return true;
  return readFileSync(a).equals(readFileSync(b));
};

/**
 * Replaces each file of `dir` whose bytes equal the same path in `prev` by a hard link to it
 * (snapshots are read, never edited in place, so sharing is safe). Returns how many were linked.
 */
export function linkUnchanged(prev: string, dir: string): number {
  let linked = 0;
  for (const rel of filesUnder(dir)) {
    const old = join(prev, rel), cur = join(dir, rel);
    if (!existsSync(old) || !statSync(old).isFile() || !sameBytes(old, cur)) continue;
    const tmp = `${cur}.link-${Deno.pid}`;
    try {
      linkSync(old, tmp);
      renameSync(tmp, cur);
      linked++;
    } catch {
      rmSync(tmp, { force: true }); // another file system: keep the copy
    }
  }
  return linked;
}

/** A path as the user should read it: relative to the working directory when inside it. */
export function shownPath(p: string): string {
  const r = relative(Deno.cwd(), p);
  return r && !r.startsWith("..") ? r : p;
}
