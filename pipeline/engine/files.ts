/** Files and folders written so that a reader never sees half of one. */
import { cpSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname } from "node:path";

/** Writes a file atomically (temp file + rename), creating parent folders. */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

/** How {@link copyDirAtomic} copies. */
export interface CopyDirOptions {
  /**
   * The temporary folder to copy into before the rename; it must be on the same file system as
   * the destination. Default: one beside it. A caller with a folder of its own that a later run
   * clears (the store's tmp/) passes one there, so an interrupted copy leaves nothing beside `to`.
   */
  tmp?: string;
  /** Names left out of the copy, at any depth (".git"). */
  skip?: string[];
}

/**
 * Copies the folder `from` to `to` atomically, creating parent folders: it is copied whole into a
 * temporary folder that is then renamed to `to`, so `to` never exists half-copied.
 */
export function copyDirAtomic(from: string, to: string, opts: CopyDirOptions = {}): void {
  const tmp = opts.tmp ?? `${to}.tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  const skip = new Set(opts.skip ?? []);
  rmSync(tmp, { recursive: true, force: true });
  try {
    cpSync(from, tmp, { recursive: true, filter: (s) => !skip.has(basename(s)) });
    mkdirSync(dirname(to), { recursive: true });
    renameSync(tmp, to);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
