/**
 * Fetching a night's upstream inputs and pinning each to an exact revision: a git TraceSet to the
 * commit its ref points at (through a bare mirror per repository, with the `git` binary, so
 * `file://` URLs, local paths and network URLs all work), a plain folder to its content digest, a
 * serving-trace file to its sha256. Everything lands in a content-addressed cache (git tree id,
 * folder digest, file sha256), so a night re-run from its lock reads the same bytes even after the
 * upstream moved on, and a night with nothing new copies nothing.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { copyDirAtomic, digestParts, sha256, sha256File, writeFileAtomic } from "../engine/mod.ts";
import {
  type LockedTraceSet,
  RefreshInputError,
  type ServingTraceSource,
  type TraceSetSource,
} from "./sources.ts";

/** Where and for whom inputs are fetched. */
export interface FetchContext {
  /** Relative paths in the sources file are resolved against this (the repository root). */
  root: string;
  /** The cache folder (mirrors, exported trees, copied folders and files). */
  cache: string;
  /** How messages name the sources file (or the lock, on a re-run). */
  shown: string;
  log: (line: string) => void;
}

/** A TraceSet ready to import: its lock entry and the local folder (named after the source). */
export interface FetchedTraceSet {
  locked: LockedTraceSet;
  dir: string;
}

/** A serving-trace file ready to replay: its lock entry and the local copy. */
export interface FetchedServingTrace {
  locked: ServingTraceSource;
  file: string;
}

const decoder = new TextDecoder();

/** Runs git; never prompts for credentials (a scheduled night has nobody to answer). */
async function git(args: string[]): Promise<{ ok: boolean; out: string; err: string }> {
  try {
    const r = await new Deno.Command("git", {
      args,
      stdout: "piped",
      stderr: "piped",
      env: { GIT_TERMINAL_PROMPT: "0", GIT_ASKPASS: "true" },
    }).output();
    return { ok: r.success, out: decoder.decode(r.stdout).trim(), err: decoder.decode(r.stderr) };
  } catch (e) {
    return { ok: false, out: "", err: `cannot run git: ${(e as Error).message}` };
  }
}

/** The last meaningful line of git's complaint, for a one-line message. */
const gitReason = (err: string) =>
  err.split("\n").map((l) => l.trim()).filter(Boolean).pop()?.replace(/^fatal: /, "") ??
    "git failed";

/** A URL as git takes it: URLs and scp-like `host:path` pass through; local paths become absolute. */
export function gitUrl(spec: string, root: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec) || /^[^/]+@[^/:]+:/.test(spec)) return spec;
  return isAbsolute(spec) ? spec : resolve(root, spec);
}

async function ensureMirror(cache: string, url: string): Promise<string> {
  const mirror = join(cache, "git", `${sha256(url).slice(0, 16)}.git`);
  if (!existsSync(join(mirror, "HEAD"))) {
    mkdirSync(dirname(mirror), { recursive: true });
    const r = await git(["init", "--bare", "--quiet", mirror]);
    if (!r.ok) throw new Error(`git init ${mirror}: ${gitReason(r.err)}`);
  }
  return mirror;
}

const hasCommit = async (mirror: string, commit: string) =>
  (await git(["-C", mirror, "cat-file", "-e", `${commit}^{commit}`])).ok;

/** Fetches `ref` from `url` into the mirror; returns the commit it points at, or git's reason. */
async function fetchRef(
  mirror: string,
  url: string,
  ref: string,
): Promise<{ commit: string } | { error: string }> {
  const r = await git(["-C", mirror, "fetch", "--quiet", "--no-tags", "--force", url, ref]);
  if (!r.ok) return { error: gitReason(r.err) };
  const c = await git(["-C", mirror, "rev-parse", "--verify", "FETCH_HEAD^{commit}"]);
  return c.ok ? { commit: c.out } : { error: gitReason(c.err) };
}

/** The commit to read: the lock's (fetched again only when the mirror lacks it), else `ref`'s now. */
async function resolveCommit(
  src: TraceSetSource,
  at: string,
  ctx: FetchContext,
  mirror: string,
  url: string,
  pin?: LockedTraceSet,
): Promise<string> {
  const want = pin?.commit ?? (/^[0-9a-f]{40}$/.test(src.ref) ? src.ref : null);
  if (want && await hasCommit(mirror, want)) return want;
  const got = await fetchRef(mirror, url, pin?.ref ?? src.ref);
  if (!want) {
    if ("error" in got) {
      throw new RefreshInputError(
        `${ctx.shown}: ${at}.ref: cannot fetch "${src.ref}" from ${url}: ${got.error}`,
      );
    }
    return got.commit;
  }
  if (!await hasCommit(mirror, want)) await fetchRef(mirror, url, want);
  if (!await hasCommit(mirror, want)) {
    throw new RefreshInputError(
      `${ctx.shown}: ${at}.commit: commit ${want} is no longer reachable from ${url} ` +
        `(ref "${pin?.ref ?? src.ref}")`,
    );
  }
  return want;
}

/** Extracts the tree `tree` of the mirror into `dest` (atomically: a temp folder renamed). */
async function exportTree(mirror: string, tree: string, dest: string): Promise<void> {
  const tmp = `${dest}.tmp-${Deno.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const tar = join(tmp, "..", `${basename(dest)}.${Deno.pid}.tar`);
  try {
    const a = await git(["-C", mirror, "archive", "--format=tar", "-o", tar, tree]);
    if (!a.ok) throw new Error(`git archive ${tree}: ${gitReason(a.err)}`);
    const t = await new Deno.Command("tar", { args: ["-xf", tar, "-C", tmp], stderr: "piped" })
      .output();
    if (!t.success) throw new Error(`tar -xf ${tar}: ${decoder.decode(t.stderr).trim()}`);
    renameSync(tmp, dest);
  } finally {
    rmSync(tar, { force: true });
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Fetches a git TraceSet and exports its sub-folder at the resolved commit. */
async function fetchGitTraceSet(
  src: TraceSetSource,
  at: string,
  ctx: FetchContext,
  pin?: LockedTraceSet,
): Promise<FetchedTraceSet> {
  const url = gitUrl(src.git!, ctx.root);
  const mirror = await ensureMirror(ctx.cache, url);
  const commit = await resolveCommit(src, at, ctx, mirror, url, pin);
  // A ref of our own keeps the commit from git's garbage collection: the lock stays re-runnable.
  await git(["-C", mirror, "update-ref", `refs/tracepipe/pins/${commit}`, commit]);
  const spec = src.path ? `${commit}:${src.path.replace(/\/+$/, "")}` : `${commit}^{tree}`;
  const tree = await git(["-C", mirror, "rev-parse", "--verify", "--quiet", spec]);
  const kind = tree.ok ? await git(["-C", mirror, "cat-file", "-t", tree.out]) : null;
  if (!tree.ok || kind?.out !== "tree") {
    throw new RefreshInputError(
      `${ctx.shown}: ${at}.path: "${src.path}" is not a folder at ${commit} of ${url}`,
    );
  }
  if (pin && pin.digest !== tree.out) {
    throw new RefreshInputError(
      `${ctx.shown}: ${at}.digest: the lock says tree ${pin.digest}, but ${commit}:${src.path} is ${tree.out}`,
    );
  }
  // Named after the source: the generate stage's cell id is `corpus/<folder name>`.
  const dir = join(ctx.cache, "trees", tree.out, src.name);
  if (!existsSync(dir)) {
    mkdirSync(dirname(dir), { recursive: true });
    await exportTree(mirror, tree.out, dir);
  }
  return {
    locked: {
      name: src.name,
      git: src.git,
      ref: src.ref,
      path: src.path,
      commit,
      digest: tree.out,
    },
    dir,
  };
}

/** Every file under `dir` but `.git/`, sorted, as repo-relative paths. */
function filesOf(dir: string, rel = ""): string[] {
  const out: string[] = [];
  for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
    if (e.name === ".git") continue;
    const p = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...filesOf(dir, p));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

/** Content digest of a folder: every file's relative path and bytes (`.git/` left out). */
export function folderDigest(dir: string): string {
  return digestParts(filesOf(dir).map((f) => [f, readFileSync(join(dir, f))]));
}

/** Copies a plain folder into the cache under its content digest (the night reads the copy). */
function fetchDirTraceSet(
  src: TraceSetSource,
  at: string,
  ctx: FetchContext,
  pin?: LockedTraceSet,
): FetchedTraceSet {
  const folder = join(isAbsolute(src.dir!) ? src.dir! : resolve(ctx.root, src.dir!), src.path);
  const cached = (digest: string) => join(ctx.cache, "dirs", digest, src.name);
  const locked = (digest: string): LockedTraceSet => ({
    name: src.name,
    dir: src.dir,
    path: src.path,
    digest,
  });
  // A re-run reads the copy the locked night made, whatever the folder holds now.
  if (pin && existsSync(cached(pin.digest))) return { locked: pin, dir: cached(pin.digest) };
  if (!existsSync(folder)) {
    throw new RefreshInputError(`${ctx.shown}: ${at}.dir: ${folder} does not exist`);
  }
  const digest = folderDigest(folder);
  if (pin && pin.digest !== digest) {
    throw new RefreshInputError(
      `${ctx.shown}: ${at}.digest: ${folder} changed since the locked night and its copy ` +
        `(${cached(pin.digest)}) is gone: it cannot be re-run exactly`,
    );
  }
  const dest = cached(digest);
  if (!existsSync(dest)) copyDirAtomic(folder, dest, { skip: [".git"] });
  return { locked: locked(digest), dir: dest };
}

/** Fetches one TraceSet (`i`: its index in the sources, for messages); `pin` re-reads a lock's. */
export async function fetchTraceSet(
  src: TraceSetSource,
  i: number,
  ctx: FetchContext,
  pin?: LockedTraceSet,
): Promise<FetchedTraceSet> {
  const at = `$.traceSets[${i}]`;
  const got = src.git !== undefined
    ? await fetchGitTraceSet(src, at, ctx, pin)
    : fetchDirTraceSet(src, at, ctx, pin);
  ctx.log(
    `fetch: ${src.name}: ${
      got.locked.commit ? `${src.ref} = ${got.locked.commit.slice(0, 12)}` : "folder"
    } (${got.locked.digest.slice(0, 12)})`,
  );
  return got;
}

/** Reads a URL (http, https or file) as bytes, or throws git-free one-line reasons. */
async function download(url: string): Promise<Uint8Array> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`HTTP ${res.status} ${res.statusText}`);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * Fetches one serving-trace file into the cache under its sha256 and checks the bytes against the
 * pinned sha256 (a file that changed upstream stops the night rather than being replayed unseen).
 */
export async function fetchServingTrace(
  src: ServingTraceSource,
  i: number,
  ctx: FetchContext,
): Promise<FetchedServingTrace> {
  const at = `$.servingTraces[${i}]`;
  const origin = src.url ?? (isAbsolute(src.path!) ? src.path! : resolve(ctx.root, src.path!));
  const file = basename(src.url ? new URL(src.url).pathname : origin) || "trace";
  const dest = join(ctx.cache, "serving", src.sha256, file);
  if (!existsSync(dest) || sha256File(dest) !== src.sha256) {
    let bytes: Uint8Array;
    try {
      bytes = src.url ? await download(src.url) : readFileSync(origin);
    } catch (e) {
      throw new RefreshInputError(
        `${ctx.shown}: ${at}.${src.url ? "url" : "path"}: cannot read ${origin}: ${
          (e as Error).message.split("\n")[0]
        }`,
      );
    }
    const got = sha256(bytes);
    if (got !== src.sha256) {
      throw new RefreshInputError(
        `${ctx.shown}: ${at}.sha256: ${origin} has sha256 ${got}, not the pinned ${src.sha256}`,
      );
    }
    writeFileAtomic(dest, bytes);
  }
  ctx.log(`fetch: ${src.name}: sha256 ${src.sha256.slice(0, 12)} (${origin})`);
  return { locked: src, file: dest };
}

/** `p` relative to `root` when inside it (a cell key then survives moving the checkout). */
export function underRoot(root: string, p: string): string {
  const r = relative(root, p);
  return r && !r.startsWith("..") && !isAbsolute(r) ? r : p;
}
