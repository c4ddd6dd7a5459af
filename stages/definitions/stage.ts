/**
 * The `definitions` stage: loads every definition under the configured folders, validates it
 * (schema, layout, and Python's own syntax check of references and constraints), and writes the
 * valid ones in canonical form as a TraceSet fragment for later stages. Invalid files are
 * reported and left out; the rest of the set goes on.
 */
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import {
  defineStage,
  type Diagnostic,
  formatDiagnostic,
  pathDigest,
  PipelineError,
  writeFileAtomic,
} from "../../pipeline/engine/mod.ts";
import { findPython } from "../../pipeline/lib/mod.ts";
import {
  checkDefinitionsSyntax,
  type Definition,
  definitionPath,
  formatDefinition,
  loadTraceSet,
} from "../../pipeline/trace/mod.ts";

/** Params of the definitions stage. */
export const DefinitionsParams = z.object({
  /** TraceSet roots (repo-relative) whose definitions/ folders are loaded, in order. */
  roots: z.array(z.string()).default(["data"]),
  /** Only definitions whose op_type is listed (empty: all). */
  op_types: z.array(z.string()).default([]),
  /**
   * TraceSet roots whose definitions fill in names no root of `roots` defines: an engine dump's own
   * definitions for the shapes the dataset lacks (profiles/llama-traced.json). A name both define
   * keeps the dataset's definition, so the dump adds and never redefines.
   */
  supplements: z.array(z.string()).default([]),
});
export type DefinitionsParams = z.infer<typeof DefinitionsParams>;

/** What the stage publishes for downstream planning. */
export interface DefinitionsSummary {
  count: number;
  byOpType: Record<string, number>;
  rejected: number;
  /** Definitions taken from `supplements` (absent when none are configured). */
  supplemented?: string[];
}

/**
 * Loads and validates the definitions of several roots. Later roots may not redefine a name.
 * Returns the valid definitions (sorted by name) and every problem found.
 */
export async function loadDefinitions(
  roots: string[],
  opTypes: string[] = [],
  python?: string | null,
  supplements: string[] = [],
): Promise<
  {
    definitions: Definition[];
    diagnostics: Diagnostic[];
    syntaxChecked: boolean;
    supplemented: string[];
  }
> {
  const diagnostics: Diagnostic[] = [];
  const byName = new Map<string, { def: Definition; file: string }>();
  const supplemented: string[] = [];
  const all = [
    ...roots.map((r) => ({ root: r, fill: false })),
    ...supplements.map((r) => ({ root: r, fill: true })),
  ];
  for (const { root, fill } of all) {
    const { set, diagnostics: d } = loadTraceSet(root);
    diagnostics.push(...d.map((x) => ({ ...x, file: join(root, x.file) })));
    for (const [name, def] of set.definitions) {
      const file = join(root, set.files.get(`definition:${name}`)!);
      if (fill && byName.has(name)) continue;
      if (fill) supplemented.push(name);
      if (byName.has(name)) {
        diagnostics.push({
          level: "error",
          file,
          path: "$.name",
          message: `duplicate definition "${name}" (also in ${byName.get(name)!.file})`,
        });
        continue;
      }
      if (opTypes.length && !opTypes.includes(def.op_type)) continue;
      byName.set(name, { def, file });
    }
  }
  const py = python === undefined ? await findPython() : python;
  const problems = py
    ? await checkDefinitionsSyntax([...byName.values()].map((v) => v.def), py)
    : null;
  for (const p of problems ?? []) {
    diagnostics.push({
      level: "error",
      file: byName.get(p.definition)!.file,
      path: p.path,
      message: p.message,
    });
    byName.delete(p.definition);
  }
  const definitions = [...byName.values()].map((v) => v.def).sort((
    a,
    b,
  ) => (a.name < b.name ? -1 : 1));
  const kept = supplemented.filter((n) => byName.has(n)).sort();
  return { definitions, diagnostics, syntaxChecked: problems !== null, supplemented: kept };
}

/** The stage. */
export const definitionsStage = defineStage<DefinitionsParams>({
  name: "definitions",
  description: "load and validate kernel definitions",
  policy: "pure",
  params: DefinitionsParams,
  env: [],
  resource: "cpu",
  module: import.meta.url,
  // The exact check runs Python's parser; its version can change what parses.
  toolchainFacts: (tc) => ({ pythonSyntax: tc.python?.version ?? null }),
  plan(ctx) {
    const inputs: Record<string, string> = {};
    const named = [
      ...ctx.params.roots.map((r, i) => [r, `roots[${i}]`]),
      ...ctx.params.supplements.map((r, i) => [r, `supplements[${i}]`]),
    ];
    for (const [r, param] of named) {
      const dir = join(ctx.root, r, "definitions");
      // A root without definitions/ is a mistyped path, not an empty set: say so in one line.
      if (!existsSync(dir) || !statSync(dir).isDirectory()) {
        throw new PipelineError(
          `definitions.${param}: "${r}" has no definitions/ folder (a TraceSet root holds one)`,
        );
      }
      inputs[r] = pathDigest(dir);
    }
    return Promise.resolve([{ id: "all", params: ctx.params, inputs }]);
  },
  async run(job, ctx) {
    const roots = ctx.params.roots.map((r) => join(ctx.root, r));
    const { definitions, diagnostics, syntaxChecked, supplemented } = await loadDefinitions(
      roots,
      ctx.params.op_types,
      ctx.toolchain.python?.path ?? null,
      ctx.params.supplements.map((r) => join(ctx.root, r)),
    );
    for (const def of definitions) {
      writeFileAtomic(join(job.outDir, definitionPath(def)), formatDefinition(def));
    }
    const rel = diagnostics.map((d) => ({ ...d, file: d.file.replace(`${ctx.root}/`, "") }));
    writeFileAtomic(join(job.outDir, "diagnostics.json"), JSON.stringify(rel, null, 2) + "\n");
    for (const d of rel) {
      job.log(formatDiagnostic(d));
      ctx.log(formatDiagnostic(d));
    }
    if (!syntaxChecked) {
      ctx.log("no Python interpreter: references were checked for `def run` only");
    }
    const byOpType: Record<string, number> = {};
    for (const d of definitions) byOpType[d.op_type] = (byOpType[d.op_type] ?? 0) + 1;
    const summary: DefinitionsSummary = {
      count: definitions.length,
      byOpType,
      rejected: new Set(rel.filter((d) => d.level === "error").map((d) => d.file)).size,
      ...(ctx.params.supplements.length ? { supplemented } : {}),
    };
    job.setSummary(summary);
    ctx.log(`${definitions.length} definitions (${summary.rejected} files rejected)`);
    if (supplemented.length) {
      ctx.log(`${supplemented.length} from supplements: ${supplemented.join(", ")}`);
    }
  },
});
