/**
 * Which thrown errors are the file system refusing a path the user gave (a folder that cannot be
 * created, a file that is not there, no permission, a full disk): those are reported as one line,
 * never as a stack trace (the project's rule for bad input).
 */

/** The error codes of Node's `fs` (Deno's `node:fs` sets them too) that a user's path causes. */
const USER_PATH_CODES = new Set([
  "ENOENT",
  "EACCES",
  "EPERM",
  "EROFS",
  "ENOTDIR",
  "EISDIR",
  "EEXIST",
  "ENOSPC",
  "ENAMETOOLONG",
]);

/** Whether `e` is a file-system refusal of a path (Node's code or Deno's own error classes). */
export function isPathError(e: unknown): e is Error {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string" && USER_PATH_CODES.has(code)) return true;
  return e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied ||
    e instanceof Deno.errors.AlreadyExists || e instanceof Deno.errors.NotADirectory ||
    e instanceof Deno.errors.IsADirectory;
}
