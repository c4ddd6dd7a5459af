/**
 * The one rule for paths a TraceSet names (blob paths, section folders): they stay inside its
 * root. Kept apart from the workload checker so that loading a TraceSet does not key every stage
 * on the checker's code.
 */
import { existsSync, realpathSync } from "node:fs";
import { isAbsolute, join, relative, sep } from "node:path";

/**
 * Why the blob path `p` of a TraceSet rooted at `root` may not be read, or null when it stays
 * inside: relative, no `..` segment, and (once links are resolved) still under the root.
 */
export function blobPathEscapes(root: string, p: string): string | null {
  if (isAbsolute(p) || /^[A-Za-z]:[\\/]/.test(p)) return "is absolute; blob paths are relative";
  if (p.split(/[\\/]/).includes("..")) return "leaves the TraceSet (contains ..)";
  const file = join(root, p);
  if (!existsSync(file)) return null;
  const real = realpathSync(file), realRoot = realpathSync(root);
  const rel = relative(realRoot, real);
  if (rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel)) {
    return "is a link leading outside the TraceSet";
  }
  return null;
}
