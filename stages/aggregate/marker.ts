/**
 * Where reports go: the committed report of the shipped runs is reports/ (marked by its README,
 * written by `tp report --ship`); an ordinary run publishes beside it, into reports/latest/.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** Where an ordinary run publishes its report, repo-relative (git-ignored). */
export const PUBLISH_DIR = "reports/latest";
/** The file that marks reports/ as the committed report (written by `tp report --ship`). */
export const SHIPPED_MARKER = "reports/README.md";
/** The marker's first line. */
export const SHIPPED_MARKER_TITLE = "# reports/: the committed report of the shipped runs";

/**
 * Where an ordinary run publishes: reports/latest/ when reports/ holds the committed report (so it
 * is never overwritten), else reports/ itself (a tree without one: a refresh night's staging
 * folder, a scratch copy of the repository).
 */
export function publishTarget(root: string): string {
  const marker = join(root, SHIPPED_MARKER);
  const shipped = existsSync(marker) &&
    readFileSync(marker, "utf8").startsWith(SHIPPED_MARKER_TITLE);
  return join(root, shipped ? PUBLISH_DIR : "reports");
}
