/** Problems found in input files, each naming the file, the JSON path and the reason. */
import type { z } from "zod";

/** One problem with one input. `path` is a JSONPath such as `$.inputs.A.shape[0]`. */
export interface Diagnostic {
  level: "error" | "warning";
  file: string;
  /** 1-based line for JSONL and CSV inputs. */
  line?: number;
  path: string;
  message: string;
}

/** Formats a zod issue path as a JSONPath. */
export function jsonPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "$";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(String(seg))) out += `.${String(seg)}`;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out;
}

/** Issue kinds whose message says what was expected but not what was found. */
const SHOWS_NO_VALUE = new Set(["invalid_value", "too_small", "too_big", "invalid_format"]);

/**
 * The issue's message, with the offending value appended where zod leaves it out (an enum
 * miss says which values are allowed, not which one was given). The value is known when the
 * parse ran with `{ reportInput: true }`.
 */
function issueMessage(issue: Issue): string {
  const input = (issue as { input?: unknown }).input;
  const primitive = input === null || ["string", "number", "boolean"].includes(typeof input);
  if (!SHOWS_NO_VALUE.has(issue.code) || !("input" in issue) || !primitive) return issue.message;
  const shown = JSON.stringify(input) ?? String(input);
  return `${issue.message}; got ${shown.length > 80 ? `${shown.slice(0, 77)}...` : shown}`;
}

/** One diagnostic per zod issue (unions report their most specific branch). */
export function fromZodError(
  err: z.ZodError,
  file: string,
  line?: number,
  prefix: PropertyKey[] = [],
): Diagnostic[] {
  return err.issues.map((issue) => {
    const best = issue.code === "invalid_union" ? bestUnionIssue(issue) : issue;
    return {
      level: "error" as const,
      file,
      line,
      path: jsonPath([...prefix, ...best.path]),
      message: issueMessage(best),
    };
  });
}

type Issue = z.core.$ZodIssue;

/** For a union that failed, picks the branch issue that got furthest (the longest path). */
function bestUnionIssue(issue: Issue): Issue {
  if (issue.code !== "invalid_union" || !("errors" in issue) || issue.errors.length === 0) {
    return issue;
  }
  let best: Issue | null = null;
  for (const branch of issue.errors) {
    for (const inner of branch) {
      const cand = { ...inner, path: [...issue.path, ...inner.path] } as Issue;
      if (!best || cand.path.length > best.path.length) best = cand;
    }
  }
  return best ?? issue;
}

/** Control, format, private-use and separator characters, and lone surrogates. */
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Co}\p{Cs}\p{Zl}\p{Zp}]/gu;
const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * Escapes what a terminal must not receive raw (control characters, ANSI escape sequences,
 * bidirectional overrides, line breaks): `\n`, `\xNN` or `\uNNNN`, so a message stays one
 * printable line whatever bytes the input held.
 */
export function escapeUnprintable(s: string): string {
  return s.replace(UNPRINTABLE, (c) => {
    if (NAMED[c]) return NAMED[c];
    const cp = c.codePointAt(0)!;
    if (cp < 0x100) return `\\x${cp.toString(16).padStart(2, "0")}`;
    return cp < 0x10000 ? `\\u${cp.toString(16).padStart(4, "0")}` : `\\u{${cp.toString(16)}}`;
  });
}

/** `file:line: $.path: message` — one printable line (see `escapeUnprintable`), never a stack trace. */
export function formatDiagnostic(d: Diagnostic): string {
  const where = d.line !== undefined ? `${d.file}:${d.line}` : d.file;
  const level = d.level === "warning" ? "warning: " : "";
  return escapeUnprintable(`${where}: ${d.path}: ${level}${d.message}`);
}
