/**
 * Params as the user gave them: validated by each stage's zod schema, and every problem blamed on
 * where the value came from (the profile file, or the `--set STAGE.KEY` that overrode it), in one
 * line naming the field.
 */
import { jsonPath } from "./diagnostics.ts";
import type { Stage } from "./stage.ts";

/** A user-facing configuration problem (bad params, unknown stage, missing upstream run). */
export class PipelineError extends Error {}

/**
 * A param value a stage could not use, thrown from `plan` (a trace name that is not known, a file
 * that does not exist): the engine turns it into one line naming the profile field or the `--set`
 * that gave it. `path` is relative to the stage's params (`["traces", 0, "name"]`).
 */
export class ParamError extends PipelineError {
  constructor(readonly path: PropertyKey[], message: string) {
    super(message);
    this.name = "ParamError";
  }
}

/** Where params came from: the profile file, and the `STAGE.KEY` paths that `--set` overrode. */
export interface ParamSources {
  /** The profile (as the user should read it, e.g. `profiles/default.json`). */
  file?: string;
  /** Each `--set STAGE.KEY=…` as `STAGE.KEY` (dotted). */
  overrides?: string[];
}

/**
 * Who gave the value at `[stage, ...path]`: the `--set` whose key is a prefix of the path (or that
 * the path is a prefix of: a `--set` deeper than the field zod blames), else the profile.
 */
export function blameParam(src: ParamSources, stage: string, path: PropertyKey[]): string {
  const at = [stage, ...path.map(String)];
  let best: string | null = null;
  let bestLen = -1;
  for (const o of src.overrides ?? []) {
    const segs = o.split(".");
    const n = Math.min(segs.length, at.length);
    if (segs.slice(0, n).every((s, i) => s === at[i]) && segs.length > bestLen) {
      best = o;
      bestLen = segs.length;
    }
  }
  return best !== null ? `--set ${best}` : src.file ?? "profile";
}

/** One line per problem: `SOURCE: $.stage.field: reason`. */
export function paramProblem(
  src: ParamSources,
  stage: string,
  path: PropertyKey[],
  message: string,
): string {
  return `${blameParam(src, stage, path)}: ${jsonPath([stage, ...path])}: ${message}`;
}

/** Parses a stage's params, turning zod issues into one line each naming the field and its source. */
export function parseParams<P>(stage: Stage<P>, raw: unknown, src: ParamSources = {}): P {
  const r = stage.params.safeParse(raw ?? {});
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => paramProblem(src, stage.name, i.path, i.message));
  throw new PipelineError(lines.join("\n"));
}

// deno-lint-ignore no-explicit-any
type Def = Record<string, any>;

const defOf = (schema: unknown): Def | null =>
  (schema as { _zod?: { def?: Def } } | null)?._zod?.def ?? null;

/** The schemas a value at this schema may take, wrappers (default, optional, pipe…) removed. */
function branches(schema: unknown, depth = 0): Def[] {
  const def = defOf(schema);
  if (!def || depth > 20) return [];
  switch (def.type) {
    case "default":
    case "prefault":
    case "optional":
    case "nullable":
    case "readonly":
    case "catch":
    case "nonoptional":
      return branches(def.innerType, depth + 1);
    case "pipe":
      return branches(def.in, depth + 1);
    case "lazy":
      return branches(def.getter(), depth + 1);
    case "union":
      return (def.options as unknown[]).flatMap((o) => branches(o, depth + 1));
    default:
      return [def];
  }
}

/**
 * Checks that a dotted param path (`traces.0.name`) names a field of a stage's params schema.
 * Returns null when it does, else where it stopped and the keys known there (empty when the
 * schema there is not an object, array or record).
 */
export function unknownParamKey(
  schema: unknown,
  path: string[],
): { at: string[]; key: string; known: string[] } | null {
  let level = [schema];
  for (const [i, seg] of path.entries()) {
    const next: unknown[] = [];
    const known = new Set<string>();
    let open = false; // something here takes any key (a record, an unknown shape)
    for (const def of level.flatMap((s) => branches(s))) {
      if (def.type === "object") {
        const shape = def.shape as Record<string, unknown>;
        for (const k of Object.keys(shape)) known.add(k);
        if (seg in shape) next.push(shape[seg]);
        else if (def.catchall && defOf(def.catchall)?.type !== "never") next.push(def.catchall);
      } else if (def.type === "array" && /^\d+$/.test(seg)) {
        next.push(def.element);
      } else if (def.type === "record" || def.type === "any" || def.type === "unknown") {
        open = true;
        if (def.valueType) next.push(def.valueType);
      }
    }
    if (next.length === 0 && !open) {
      return { at: path.slice(0, i), key: seg, known: [...known] };
    }
    if (next.length === 0) return null; // inside a free-form value: nothing more to check
    level = next;
  }
  return null;
}
