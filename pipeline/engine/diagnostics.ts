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
      message: best.message,
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

/** `file:line: $.path: message` — one line, never a stack trace. */
export function formatDiagnostic(d: Diagnostic): string {
  const where = d.line !== undefined ? `${d.file}:${d.line}` : d.file;
  const level = d.level === "warning" ? "warning: " : "";
  return `${where}: ${d.path}: ${level}${d.message}`;
}
