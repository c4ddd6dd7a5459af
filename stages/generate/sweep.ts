/**
 * The sweep backend: a kernel folder (cuda/*, triton/*, baselines/*) holds a `kernel.json`
 * manifest declaring its parameter space. Every (matching definition × sweep point) becomes one
 * Solution whose params file (`#define` lines for C/CUDA, assignments for Python/Triton) is
 * generated and added to the sources, so every language gets the same search effort.
 * Each solution's place in the sweep is written to the cell's sweep index
 * (pipeline/trace/sweep_index.ts), from which aggregate picks the best point.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { type Diagnostic, fromZodError } from "../../pipeline/engine/mod.ts";
import {
  BuildSpec,
  checkSolutionSignature,
  type Definition,
  evaluate,
  FLOATING_DTYPES,
  Solution,
  type SweepIndexEntry,
} from "../../pipeline/trace/mod.ts";

/** A sweep parameter value. */
export const ParamValue = z.union([z.number(), z.boolean(), z.string().regex(/^[\w.:<>, ]+$/)]);
export type ParamValue = z.infer<typeof ParamValue>;

const Ident = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "must be an identifier");

/**
 * A limit of the kernel's own, over a definition's constant axes (Python syntax, as a definition's
 * constraints), e.g. `num_qo_heads // num_kv_heads <= 8`. A definition the name regex matches but a
 * requirement rules out gets no solution, and the reason is reported instead of a failed judgement.
 */
export const Requirement = z.object({ expr: z.string().min(1), reason: z.string().min(1) });
export type Requirement = z.infer<typeof Requirement>;

/** The `kernel.json` manifest of one kernel folder. */
export const KernelManifest = z.object({
  name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "must be path-safe ([A-Za-z0-9_.-])"),
  author: z.string().min(1),
  op_type: z.string().min(1),
  definition_regex: z.string().min(1),
  spec: BuildSpec.omit({ entry_point: true }).extend({ entry_point: z.string().min(1) }),
  sources: z.array(z.string().min(1)).min(1),
  params_file: z.string().regex(
    /^[\w./-]+\.(h|cuh|hpp|py)$/,
    "must be a relative .h/.cuh/.hpp/.py path",
  ).optional(),
  params: z.record(Ident, z.array(ParamValue).min(1)).default({}),
  default: z.record(Ident, ParamValue).default({}),
  requires: z.array(Requirement).default([]),
  /**
   * The floating-point dtypes the kernel is written for (empty: any). A definition with a
   * floating-point input or output of another dtype gets no solution, the reason reported: a
   * kernel's dtype check would otherwise fail every workload of it as a runtime error.
   */
  dtypes: z.array(z.enum(FLOATING_DTYPES)).default([]),
  description: z.string().optional(),
});
export type KernelManifest = z.infer<typeof KernelManifest>;

/** Loads and validates a manifest; problems are diagnostics naming `label`. */
export function loadManifest(
  path: string,
  label: string,
): { manifest?: KernelManifest; diagnostics: Diagnostic[] } {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    return {
      diagnostics: [{
        level: "error",
        file: label,
        path: "$",
        message: `cannot read manifest: ${(e as Error).message}`,
      }],
    };
  }
  const p = KernelManifest.safeParse(raw);
  if (!p.success) return { diagnostics: fromZodError(p.error, label) };
  const m = p.data;
  const diagnostics: Diagnostic[] = [];
  try {
    new RegExp(m.definition_regex);
  } catch (e) {
    diagnostics.push({
      level: "error",
      file: label,
      path: "$.definition_regex",
      message: `invalid regex: ${(e as Error).message}`,
    });
  }
  if (Object.keys(m.params).length > 0 && !m.params_file) {
    diagnostics.push({
      level: "error",
      file: label,
      path: "$.params_file",
      message: "params are declared but no params_file says where they go",
    });
  }
  if (m.params_file && m.sources.includes(m.params_file)) {
    diagnostics.push({
      level: "error",
      file: label,
      path: "$.params_file",
      message: `params_file "${m.params_file}" is also listed in sources; it is generated`,
    });
  }
  const entryFile = m.spec.entry_point.split("::")[0];
  if (m.spec.entry_point.split("::").length !== 2) {
    diagnostics.push({
      level: "error",
      file: label,
      path: "$.spec.entry_point",
      message: 'entry_point must have the form "<file>::<symbol>"',
    });
  } else if (!m.sources.includes(entryFile)) {
    diagnostics.push({
      level: "error",
      file: label,
      path: "$.spec.entry_point",
      message: `entry file "${entryFile}" is not among the sources`,
    });
  }
  for (const [i, s] of m.sources.entries()) {
    if (s.startsWith("/") || s.split(/[\\/]/).includes("..")) {
      diagnostics.push({
        level: "error",
        file: label,
        path: `$.sources[${i}]`,
        message: `source path "${s}" must stay inside the kernel folder`,
      });
    }
  }
  return diagnostics.length ? { diagnostics } : { manifest: m, diagnostics };
}

/** The definitions a manifest applies to: same op_type and name fully matching the regex. */
export function matchDefinitions(m: KernelManifest, defs: Iterable<Definition>): Definition[] {
  const re = new RegExp(`^(?:${m.definition_regex})$`);
  return [...defs].filter((d) => d.op_type === m.op_type && re.test(d.name)).sort((
    a,
    b,
  ) => (a.name < b.name ? -1 : 1));
}

const FLOATING = new Set<string>(FLOATING_DTYPES);

/**
 * Why the manifest's `dtypes` or `requires` rule out a definition (the first requirement it fails, or one that
 * cannot be evaluated on its constant axes), or null when it meets them all.
 */
export function unmetRequirement(m: KernelManifest, def: Definition): string | null {
  if (m.dtypes.length) {
    const tensors = [...Object.entries(def.inputs), ...Object.entries(def.outputs)];
    for (const [name, t] of tensors) {
      if (FLOATING.has(t.dtype) && !(m.dtypes as string[]).includes(t.dtype)) {
        return `the kernel takes ${m.dtypes.join(", ")}; ${name} is ${t.dtype} ($.dtypes)`;
      }
    }
  }
  const env: Record<string, number> = {};
  for (const [name, ax] of Object.entries(def.axes)) if (ax.type === "const") env[name] = ax.value;
  for (const [i, r] of m.requires.entries()) {
    let ok: number | boolean;
    try {
      ok = evaluate(r.expr, env);
    } catch (e) {
      return `$.requires[${i}] "${r.expr}" cannot be evaluated: ${(e as Error).message}`;
    }
    if (!ok) return `${r.reason} ($.requires[${i}]: ${r.expr})`;
  }
  return null;
}

/**
 * Sweep points: the cartesian product of `params` (parameter names sorted, values in manifest
 * order), or only the default point in `default` mode. Each point also carries fixed `default`
 * values of parameters that are not swept.
 */
export function sweepPoints(
  m: KernelManifest,
  mode: "grid" | "default",
): Array<Record<string, ParamValue>> {
  const names = Object.keys(m.params).sort();
  if (mode === "default") {
    const point: Record<string, ParamValue> = {};
    for (const n of names) point[n] = m.default[n] ?? m.params[n][0];
    return [point];
  }
  let points: Array<Record<string, ParamValue>> = [{}];
  for (const n of names) points = points.flatMap((p) => m.params[n].map((v) => ({ ...p, [n]: v })));
  return points;
}

const nameValue = (v: ParamValue) =>
  typeof v === "boolean"
    ? (v ? "1" : "0")
    : String(v).replace(/-/g, "m").replace(/\./g, "p").replace(/[^A-Za-z0-9]/g, "");

/** Deterministic solution name: `<kernel>__<definition>[__P-v]...` with swept params sorted by name. */
export function sweepSolutionName(
  m: KernelManifest,
  def: string,
  point: Record<string, ParamValue>,
): string {
  const swept = Object.keys(m.params).sort();
  return [`${m.name}__${def}`, ...swept.map((n) => `${n}-${nameValue(point[n])}`)].join("__");
}

/** Text of the generated params file for one point (C preprocessor or Python syntax by extension). */
export function paramsFileText(
  m: KernelManifest,
  point: Record<string, ParamValue>,
): string {
  const values: Record<string, ParamValue> = { ...m.default, ...point };
  const names = Object.keys(values).sort();
  const python = m.params_file!.endsWith(".py");
  // The definition is not named here: the same point must give the same bytes for every
  // definition, so the harness builds it once.
  const header = `Generated by tracepipe generate: kernel ${m.name}. Do not edit.`;
  if (python) {
    const lit = (
      v: ParamValue,
    ) => (typeof v === "boolean"
      ? (v ? "True" : "False")
      : typeof v === "string"
      ? JSON.stringify(v)
      : String(v));
    return [`# ${header}`, ...names.map((n) => `${n} = ${lit(values[n])}`)].join("\n") + "\n";
  }
  const lit = (v: ParamValue) => (typeof v === "boolean" ? (v ? "1" : "0") : String(v));
  return [`// ${header}`, "#pragma once", ...names.map((n) => `#define ${n} ${lit(values[n])}`)]
    .join("\n") + "\n";
}

/**
 * Builds the solutions of one manifest for the given definitions. `kernelDir` holds the sources;
 * `label` names the manifest in diagnostics.
 */
export function buildSweep(
  m: KernelManifest,
  kernelDir: string,
  defs: Definition[],
  mode: "grid" | "default",
  label: string,
  gridRegex?: RegExp,
): { solutions: Solution[]; index: SweepIndexEntry[]; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const files: Array<{ path: string; content: string }> = [];
  for (const [i, s] of m.sources.entries()) {
    const p = join(kernelDir, s);
    if (!existsSync(p)) {
      diagnostics.push({
        level: "error",
        file: label,
        path: `$.sources[${i}]`,
        message: `source file "${s}" does not exist`,
      });
      continue;
    }
    const content = readFileSync(p, "utf8");
    if (!content) {
      diagnostics.push({
        level: "error",
        file: label,
        path: `$.sources[${i}]`,
        message: `source file "${s}" is empty`,
      });
      continue;
    }
    files.push({ path: s, content });
  }
  if (diagnostics.length) return { solutions: [], index: [], diagnostics };
  const solutions: Solution[] = [];
  const index: SweepIndexEntry[] = [];
  for (const def of defs) {
    // With a grid regex, definitions outside it get only the default point (a cheaper sweep).
    const defMode = mode === "grid" && gridRegex && !gridRegex.test(def.name) ? "default" : mode;
    for (const point of sweepPoints(m, defMode)) {
      const name = sweepSolutionName(m, def.name, point);
      const sources = [...files];
      if (m.params_file) {
        sources.push({ path: m.params_file, content: paramsFileText(m, point) });
      }
      const swept = Object.keys(point).sort().map((n) => `${n}=${point[n]}`).join(", ");
      const desc = [m.description, swept ? `Sweep point ${swept}.` : null].filter(Boolean).join(
        " ",
      );
      const p = Solution.safeParse({
        name,
        definition: def.name,
        author: m.author,
        description: desc || undefined,
        spec: m.spec,
        sources,
      });
      if (!p.success) {
        diagnostics.push(...fromZodError(p.error, label));
        continue;
      }
      // The entry point is checked like a corpus solution's; a mismatch drops that solution only.
      const sig = checkSolutionSignature(p.data, def);
      for (const w of sig.warnings) {
        diagnostics.push({
          level: "warning",
          file: label,
          path: "$.spec.entry_point",
          message: `${name}: ${w}`,
        });
      }
      if (sig.errors.length) {
        for (const e of sig.errors) {
          diagnostics.push({
            level: "error",
            file: label,
            path: "$.spec.entry_point",
            message: `${name}: ${e}`,
          });
        }
        continue;
      }
      solutions.push(p.data);
      index.push({ solution: name, kernel: m.name, definition: def.name, point });
    }
  }
  return { solutions, index, diagnostics };
}
