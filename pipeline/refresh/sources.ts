/**
 * The sources file of `tp refresh` (refresh/sources.json) and its lock: which upstream inputs a
 * night reads (FlashInfer TraceSets and corpora from git or a local folder, serving-trace files by
 * path or URL with their sha256), which profile it runs, and where its snapshots go. The lock is
 * the same document with every input resolved to an exact revision, so a night can be re-run.
 * Every problem is one line naming the file, the JSON path and the reason.
 */
import { existsSync, readFileSync } from "node:fs";
import { z } from "zod";
import { type Diagnostic, formatDiagnostic, fromZodError } from "../engine/mod.ts";

/** Thrown for a bad sources file, lock or upstream input: the night cannot go on (exit 2). */
export class RefreshInputError extends Error {
  constructor(message: string, readonly diagnostics: Diagnostic[] = []) {
    super(message);
    this.name = "RefreshInputError";
  }
}

const NAME = z.string().regex(
  /^[A-Za-z0-9._-]+$/,
  "letters, digits, '.', '_' and '-' only (it names a folder and a cell)",
);

/**
 * One TraceSet or corpus: a git repository (URL, `file://` URL or local path) at `ref`, or a plain
 * local folder (`dir`, pinned by its content digest); `path` is the sub-folder holding the TraceSet.
 */
export const TraceSetSource = z.strictObject({
  name: NAME,
  git: z.string().min(1).optional(),
  dir: z.string().min(1).optional(),
  /** Branch, tag or commit (git only). */
  ref: z.string().min(1).default("main"),
  /** Sub-folder of the repository or folder ("" for its root). */
  path: z.string().default("").refine(
    (p) => !p.split("/").includes("..") && !p.startsWith("/"),
    "must stay inside the repository (no '..', not absolute)",
  ),
}).superRefine((s, ctx) => {
  if ((s.git === undefined) === (s.dir === undefined)) {
    ctx.addIssue({ code: "custom", message: "give exactly one of git (a repository) or dir" });
  }
});
/** A parsed TraceSet source. */
export type TraceSetSource = z.infer<typeof TraceSetSource>;

/** One serving-trace file, by path or URL, pinned by its sha256; the fields after `format` are collect's. */
export const ServingTraceSource = z.strictObject({
  name: NAME,
  path: z.string().min(1).optional(),
  url: z.string().min(1).optional(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "a sha256 in lower-case hex (64 characters)"),
  format: z.enum(["azure-csv", "mooncake-jsonl", "length-stats-csv"]),
  limit: z.number().int().positive().optional(),
  rate: z.number().positive().optional(),
  seed: z.number().int().nonnegative().optional(),
  blockTokens: z.number().int().positive().optional(),
}).superRefine((s, ctx) => {
  if ((s.path === undefined) === (s.url === undefined)) {
    ctx.addIssue({ code: "custom", message: "give exactly one of path or url" });
  }
});
/** A parsed serving-trace source. */
export type ServingTraceSource = z.infer<typeof ServingTraceSource>;

/** The sources file. Keys starting with "_" are comments. */
export const Sources = z.strictObject({
  traceSets: z.array(TraceSetSource).default([]),
  servingTraces: z.array(ServingTraceSource).default([]),
  /** The profile the night runs (repository-relative or absolute). */
  profile: z.string().min(1).default("profiles/default.json"),
  /** `STAGE.KEY=VALUE` overrides applied to the profile, as `reproduce --set` does. */
  set: z.array(z.string().regex(/^[a-z_]+\.[A-Za-z0-9_.]+=/s, "expected STAGE.KEY=VALUE"))
    .default([]),
  /** Where the dated snapshots and the `latest` link live. */
  snapshots: z.string().min(1).default(".tracepipe/snapshots"),
  changelog: z.strictObject({
    /**
     * A latency change is reported only when larger than both cells' measured spread and this
     * fraction (0.03: the p90 of run-to-run movement of two full H100 runs, docs/BENCHMARKS.md).
     */
    minRelChange: z.number().min(0).default(0.03),
  }).prefault({}),
}).superRefine((s, ctx) => {
  for (const key of ["traceSets", "servingTraces"] as const) {
    const seen = new Set<string>();
    s[key].forEach((e, i) => {
      if (seen.has(e.name)) {
        ctx.addIssue({
          code: "custom",
          path: [key, i, "name"],
          message: `duplicate name "${e.name}"`,
        });
      }
      seen.add(e.name);
    });
  }
});
/** A parsed sources file. */
export type Sources = z.infer<typeof Sources>;

/** A TraceSet as one night resolved it. */
export const LockedTraceSet = z.strictObject({
  name: NAME,
  git: z.string().optional(),
  dir: z.string().optional(),
  ref: z.string().optional(),
  path: z.string(),
  /** The commit `ref` pointed at (git). */
  commit: z.string().regex(/^[0-9a-f]{40,64}$/).optional(),
  /** git's tree id of `path` at `commit`, or the content digest of a plain folder. */
  digest: z.string().min(1),
});
/** A locked TraceSet. */
export type LockedTraceSet = z.infer<typeof LockedTraceSet>;

/** The lock: what a night read, exactly. */
export const Lock = z.strictObject({
  format: z.literal("tracepipe/refresh-lock-v1"),
  /** The sources file this lock was resolved from (as given). */
  sources: z.string(),
  resolvedAt: z.string(),
  profile: z.strictObject({ path: z.string(), sha256: z.string() }),
  set: z.array(z.string()),
  snapshots: z.string(),
  changelog: z.strictObject({ minRelChange: z.number().min(0) }),
  traceSets: z.array(LockedTraceSet),
  servingTraces: z.array(ServingTraceSource),
  /** The tracepipe checkout that resolved it (for the record; not enforced on a re-run). */
  tracepipe: z.strictObject({ commit: z.string().nullable(), dirty: z.boolean() }),
});
/** A parsed lock. */
export type Lock = z.infer<typeof Lock>;

/** The lock's path beside a sources file: `x.json` → `x.lock.json`. */
export const lockPathFor = (sourcesPath: string) =>
  sourcesPath.endsWith(".json")
    ? `${sourcesPath.slice(0, -".json".length)}.lock.json`
    : `${sourcesPath}.lock.json`;

/** Reads a JSON file, or throws one line naming it and the reason. */
function readJsonFile(path: string, shown: string, what: string): unknown {
  if (!existsSync(path)) throw new RefreshInputError(`${shown}: $: ${what} does not exist`);
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new RefreshInputError(`${shown}: $: malformed JSON: ${(e as Error).message}`);
  }
}

/** Drops top-level "_comment" keys, which any of tracepipe's JSON files may carry. */
function withoutComments(raw: unknown): unknown {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return raw;
  return Object.fromEntries(Object.entries(raw).filter(([k]) => !k.startsWith("_")));
}

/** Parses with `schema`, or throws every problem as `file: $.path: reason`, one per line. */
function parseOrThrow<T>(schema: z.ZodType<T>, raw: unknown, shown: string): T {
  const p = schema.safeParse(withoutComments(raw), { reportInput: true });
  if (p.success) return p.data;
  const diags = fromZodError(p.error, shown);
  throw new RefreshInputError(diags.map(formatDiagnostic).join("\n"), diags);
}

/** Loads and validates a sources file (`shown` is how messages name it). */
export function loadSources(path: string, shown = path): Sources {
  return parseOrThrow(Sources, readJsonFile(path, shown, "the sources file"), shown);
}

/** Loads and validates a lock written by an earlier night. */
export function loadLock(path: string, shown = path): Lock {
  return parseOrThrow(Lock, readJsonFile(path, shown, "the lock file"), shown);
}
