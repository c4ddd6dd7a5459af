/**
 * The code digest of a stage: the bytes of every local module its entry module imports
 * (transitively), the pinned versions of the npm packages it imports, and any non-TypeScript
 * files it executes. Editing any of them changes the digest, and so the stage's cell keys.
 *
 * The import graph is read with a small scanner for static `import`/`export … from` and
 * `import("…")` with literal specifiers, which is all this codebase uses; it needs no
 * subprocess, so planning stays fast. Type-only imports are not followed (they are erased), and
 * through a folder's face only the modules behind the imported names are.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fromFileUrl } from "./paths.ts";
import { digestParts, sha256 } from "./hash.ts";

const SPECIFIER =
  /(?:import|export)\s*(type\s+)?(?:([^'"`;]*?)\sfrom\s*)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

/** One re-export line of a face: `export { a, b as c } from "./x.ts";` (or `export type {…}`). */
const REEXPORT = /^export\s*(type\s+)?\{([^}]*)\}\s*from\s*["']([^"']+)["']\s*;?$/;

/**
 * A face (`mod.ts`) made only of named re-exports, as exported name → the module it comes from
 * (null for a type-only name); undefined when the file is anything more than that.
 */
function faceExports(file: string, src: string): Map<string, string | null> | undefined {
  const body = src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const statements = body.split(";").map((t) => t.replace(/\s+/g, " ").trim()).filter(Boolean);
  const out = new Map<string, string | null>();
  for (const st of statements) {
    const m = REEXPORT.exec(st);
    if (!m) return undefined;
    const from = resolve(dirname(file), m[3]);
    for (const item of m[2].split(",").map((t) => t.trim()).filter(Boolean)) {
      const typeOnly = Boolean(m[1]) || item.startsWith("type ");
      const name = item.replace(/^type\s+/, "").split(/\s+as\s+/).pop()!.trim();
      out.set(name, typeOnly ? null : from);
    }
  }
  return out;
}

/** The value names a statement's clause binds (`{ a, type B, c as d }`), or null for any other. */
function namedValues(clause: string | undefined): string[] | null {
  const m = clause && /^\s*\{([^}]*)\}\s*$/.exec(clause);
  if (!m) return null;
  return m[1].split(",").map((t) => t.trim()).filter((t) => t && !t.startsWith("type "))
    .map((t) => t.split(/\s+as\s+/)[0].trim());
}

/**
 * Every local module reachable from `entry` (absolute paths, sorted) and the bare specifiers used.
 * Through a face (a module of named re-exports only, such as a folder's `mod.ts`) only the modules
 * behind the names imported are followed, so importing one helper from a folder's face ties a
 * stage's key to that helper, not to the whole folder.
 */
export function moduleGraph(entry: string): { files: string[]; packages: string[] } {
  const seen = new Set<string>();
  const packages = new Set<string>();
  const stack = [resolve(entry)];
  const faces = new Map<string, Map<string, string | null> | undefined>();
  const faceOf = (file: string) => {
    if (!faces.has(file)) faces.set(file, faceExports(file, readFileSync(file, "utf8")));
    return faces.get(file);
  };
  while (stack.length) {
    const file = stack.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const src = readFileSync(file, "utf8");
    for (const m of src.matchAll(SPECIFIER)) {
      // `import type`/`export type` are erased before running: what they name cannot change what
      // the stage does, and following them would tie a stage's cells to unrelated modules.
      if (m[1]) continue;
      const spec = m[3] ?? m[4];
      if (spec.startsWith("./") || spec.startsWith("../")) {
        const target = resolve(dirname(file), spec);
        if (!existsSync(target)) continue;
        const names = m[4] ? null : namedValues(m[2]);
        const face = names ? faceOf(target) : undefined;
        if (!face || !names!.every((n) => face.has(n))) {
          stack.push(target);
          continue;
        }
        seen.add(target); // the face's own bytes count; its other modules do not
        for (const n of names!) {
          const from = face.get(n);
          if (from) stack.push(from);
        }
      } else if (!spec.startsWith("node:")) {
        packages.add(spec);
      }
    }
  }
  return { files: [...seen].sort(), packages: [...packages].sort() };
}

/** Files under `path` (a file or a folder), sorted, skipping caches. */
function filesUnder(path: string): string[] {
  if (!existsSync(path)) return [];
  if (statSync(path).isFile()) return [path];
  const out: string[] = [];
  for (const e of readdirSync(path, { withFileTypes: true })) {
    if (e.name === "__pycache__" || e.name.startsWith(".")) continue;
    const p = join(path, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out.sort();
}

/** Resolved versions of the packages the code imports, from deno.json's import map. */
function packageVersions(root: string, packages: string[]): Record<string, string> {
  let imports: Record<string, string> = {};
  try {
    imports = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")).imports ?? {};
  } catch { /* no import map: record the bare names only */ }
  const out: Record<string, string> = {};
  for (const p of packages) {
    const base = Object.keys(imports).find((k) => p === k || p.startsWith(`${k}/`));
    out[p] = base ? imports[base] : p;
  }
  return out;
}

/** Digest of what a stage runs, plus the list of files that went into it (repo-relative). */
export function codeDigest(
  root: string,
  moduleUrl: string,
  codeFiles: string[] = [],
): { digest: string; files: string[] } {
  const { files, packages } = moduleGraph(fromFileUrl(moduleUrl));
  const extra = codeFiles.flatMap((f) => filesUnder(join(root, f)));
  const all = [...new Set([...files, ...extra])].sort();
  const parts: Array<[string, string | Uint8Array]> = all.map((
    f,
  ) => [relative(root, f), readFileSync(f)]);
  parts.push(["packages", JSON.stringify(packageVersions(root, packages))]);
  return { digest: digestParts(parts), files: all.map((f) => relative(root, f)) };
}

/** sha256 over every file under `path` with its relative path (a folder's content digest). */
export function treeDigest(path: string): string {
  const files = filesUnder(path);
  return digestParts(files.map((f) => [relative(path, f), readFileSync(f)]));
}

/** sha256 of a single file, or of a folder's tree. */
export function pathDigest(path: string): string {
  return statSync(path).isFile() ? sha256(readFileSync(path)) : treeDigest(path);
}
