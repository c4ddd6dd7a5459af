/** Repository paths: the root, and file-URL conversion without @std/path. */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** Converts a `file://` URL (such as `import.meta.url`) to a path. */
export function fromFileUrl(url: string): string {
  return url.startsWith("file:") ? fileURLToPath(url) : url;
}

/** The repository root: the folder holding deno.json above this module. */
export const REPO_ROOT = resolve(dirname(fromFileUrl(import.meta.url)), "..", "..");

/** Default location of the content-addressed store (git-ignored). */
export const DEFAULT_STORE = resolve(REPO_ROOT, ".tracepipe", "store");
