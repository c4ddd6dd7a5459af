/**
 * The corpus backend: imports the solutions (and definitions, workloads and blobs) of a FlashInfer
 * TraceSet directory, upgrading the 2025-08 draft format on the way (legacy.ts), and checks every
 * solution's entry point against its definition (signature.ts). Problems are diagnostics naming
 * the file and the reason; a bad file or solution is left out, the rest is imported.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { Diagnostic } from "../../pipeline/engine/diagnostics.ts";
import { fromZodError } from "../../pipeline/engine/diagnostics.ts";
import { Definition, isWorkloadTrace, Solution, Trace } from "../../pipeline/trace/schema.ts";
import {
  emptyTraceSet,
  formatDefinition,
  listFiles,
  type TraceSet,
} from "../../pipeline/trace/traceset.ts";
import { looksDraft, upgradeDefinition, upgradeSolution, upgradeTraceLine } from "./legacy.ts";
import { checkSolutionSignature } from "./signature.ts";

/** What the run already has, for resolving and de-duplicating. */
export interface RunContext {
  /** Definitions of the run (from the definitions stage), by name. */
  definitions: Map<string, Definition>;
  /** Workload uuids the run already has, by definition name. */
  workloadUuids: Map<string, Set<string>>;
}

/** One file's upgrade notes. */
export interface UpgradeNote {
  file: string;
  changes: string[];
}

/** Result of importing one corpus. */
export interface CorpusImport {
  /** The objects to write (definitions include every run definition the corpus's objects use). */
  set: TraceSet;
  /** Corpus-relative blob files referenced by imported workloads, to copy as they are. */
  blobs: string[];
  diagnostics: Diagnostic[];
  upgrades: UpgradeNote[];
  format: "current" | "2025-08-draft";
  counts: {
    definitions: number;
    solutions: number;
    rejectedSolutions: number;
    workloads: number;
    skippedWorkloads: number;
    /** Evaluated traces found in the corpus; they are not imported (foreign hardware). */
    foreignTraces: number;
  };
}

function readJson(path: string, file: string, diags: Diagnostic[]): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    diags.push({
      level: "error",
      file,
      path: "$",
      message: `malformed JSON: ${(e as Error).message}`,
    });
    return undefined;
  }
}

/**
 * Imports the corpus at `dir`. `label` prefixes diagnostic file names (e.g. the corpus folder as
 * the user gave it), so messages name files the user can open.
 */
export function importCorpus(dir: string, run: RunContext, label = dir): CorpusImport {
  const diags: Diagnostic[] = [];
  const upgrades: UpgradeNote[] = [];
  const at = (p: string) => join(label, relative(dir, p));
  const err = (file: string, path: string, message: string, line?: number) =>
    diags.push({ level: "error", file, line, path, message });
  const warn = (file: string, path: string, message: string, line?: number) =>
    diags.push({ level: "warning", file, line, path, message });
  const counts = {
    definitions: 0,
    solutions: 0,
    rejectedSolutions: 0,
    workloads: 0,
    skippedWorkloads: 0,
    foreignTraces: 0,
  };
  const out = emptyTraceSet(dir);
  const blobs = new Set<string>();

  if (!existsSync(dir)) {
    err(label, "$", "corpus directory does not exist");
    return { set: out, blobs: [], diagnostics: diags, upgrades, format: "current", counts };
  }

  const defFiles = listFiles(join(dir, "definitions"), ".json");
  const solFiles = listFiles(join(dir, "solutions"), ".json");
  const rawDefs = defFiles.map((f) => [f, readJson(f, at(f), diags)] as const);
  const rawSols = solFiles.map((f) => [f, readJson(f, at(f), diags)] as const);
  const draft = [...rawDefs, ...rawSols].some(([, raw]) => looksDraft(raw));
  const format = draft ? "2025-08-draft" : "current";

  // Definitions: the corpus's own, unless the run already has one of that name.
  const own = new Map<string, Definition>();
  for (const [f, raw] of rawDefs) {
    if (raw === undefined) continue;
    const up = upgradeDefinition(raw);
    if (!up.ok) {
      err(at(f), "$", `cannot upgrade: ${up.reason}`);
      continue;
    }
    if (up.changes.length) upgrades.push({ file: at(f), changes: up.changes });
    const p = Definition.safeParse(up.value);
    if (!p.success) {
      diags.push(...fromZodError(p.error, at(f)));
      continue;
    }
    const def = p.data;
    if (own.has(def.name)) {
      err(
        at(f),
        "$.name",
        `duplicate definition "${def.name}" in this corpus; the first one is kept`,
      );
      continue;
    }
    const existing = run.definitions.get(def.name);
    if (existing && formatDefinition(existing) !== formatDefinition(def)) {
      warn(
        at(f),
        "$",
        `definition "${def.name}" differs from the run's definition of that name; the run's definition is used`,
      );
      continue;
    }
    own.set(def.name, def);
    out.definitions.set(def.name, def); // the corpus's own definitions join the run
    counts.definitions++;
  }
  const lookup = (name: string) => run.definitions.get(name) ?? own.get(name);
  const use = (name: string) => {
    const def = lookup(name)!;
    out.definitions.set(name, def);
    return def;
  };

  // Solutions.
  for (const [f, raw] of rawSols) {
    if (raw === undefined) continue;
    const defName = (raw as { definition?: unknown })?.definition;
    const def = typeof defName === "string" ? lookup(defName) : undefined;
    const up = upgradeSolution(raw, draft, def ? Object.keys(def.outputs) : undefined);
    if (!up.ok) {
      err(at(f), "$.spec.entry_point", `cannot upgrade: ${up.reason}`);
      counts.rejectedSolutions++;
      continue;
    }
    if (up.changes.length) upgrades.push({ file: at(f), changes: up.changes });
    const p = Solution.safeParse(up.value);
    if (!p.success) {
      diags.push(...fromZodError(p.error, at(f)));
      counts.rejectedSolutions++;
      continue;
    }
    const sol = p.data;
    if (!def) {
      err(
        at(f),
        "$.definition",
        `definition "${sol.definition}" is neither in this corpus nor in the run`,
      );
      counts.rejectedSolutions++;
      continue;
    }
    if (out.solutions.has(sol.name)) {
      err(at(f), "$.name", `duplicate solution name "${sol.name}"; the first one is kept`);
      counts.rejectedSolutions++;
      continue;
    }
    const check = checkSolutionSignature(sol, def);
    for (const w of check.warnings) warn(at(f), "$.spec.entry_point", w);
    if (check.errors.length > 0) {
      for (const e of check.errors) err(at(f), "$.spec.entry_point", e);
      counts.rejectedSolutions++;
      continue;
    }
    use(def.name);
    out.solutions.set(sol.name, sol);
    counts.solutions++;
  }

  // Workloads (draft files are named *.workload.jsonl; any .jsonl under workloads/ is read).
  for (const f of listFiles(join(dir, "workloads"), ".jsonl")) {
    const seen = new Map<string, number>();
    const unknown = new Map<string, number>();
    readFileSync(f, "utf8").split("\n").forEach((text, i) => {
      if (!text.trim()) return;
      const line = i + 1;
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch (e) {
        err(at(f), "$", `malformed JSON: ${(e as Error).message}`, line);
        counts.skippedWorkloads++;
        return;
      }
      const up = upgradeTraceLine(raw, seen);
      if (!up.ok) {
        err(at(f), "$", `cannot upgrade: ${up.reason}`, line);
        counts.skippedWorkloads++;
        return;
      }
      const p = Trace.safeParse(up.value);
      if (!p.success) {
        diags.push(...fromZodError(p.error, at(f), line));
        counts.skippedWorkloads++;
        return;
      }
      const t = p.data;
      if (!isWorkloadTrace(t)) {
        err(at(f), "$.evaluation", "a workloads file may only hold workload traces", line);
        counts.skippedWorkloads++;
        return;
      }
      if (!lookup(t.definition)) {
        unknown.set(t.definition, (unknown.get(t.definition) ?? 0) + 1);
        counts.skippedWorkloads++;
        return;
      }
      if (run.workloadUuids.get(t.definition)?.has(t.workload.uuid)) {
        counts.skippedWorkloads++; // the run has it already
        return;
      }
      const list = out.workloads.get(t.definition) ?? [];
      if (list.some((w) => w.uuid === t.workload.uuid)) {
        err(at(f), "$.workload.uuid", `duplicate workload uuid "${t.workload.uuid}"`, line);
        counts.skippedWorkloads++;
        return;
      }
      for (const [name, inp] of Object.entries(t.workload.inputs)) {
        if (inp.type !== "safetensors") continue;
        if (inp.path.split(/[\\/]/).includes("..") || inp.path.startsWith("/")) {
          err(
            at(f),
            `$.workload.inputs.${name}.path`,
            `blob path "${inp.path}" leaves the corpus`,
            line,
          );
          counts.skippedWorkloads++;
          return;
        }
        if (!existsSync(join(dir, inp.path))) {
          err(
            at(f),
            `$.workload.inputs.${name}.path`,
            `blob file "${inp.path}" does not exist`,
            line,
          );
          counts.skippedWorkloads++;
          return;
        }
      }
      for (const inp of Object.values(t.workload.inputs)) {
        if (inp.type === "safetensors") blobs.add(inp.path.replace(/^\.\//, ""));
      }
      use(t.definition);
      out.workloads.set(t.definition, [...list, t.workload]);
      counts.workloads++;
    });
    for (const [name, n] of unknown) {
      err(
        at(f),
        "$.definition",
        `${n} workload(s) for definition "${name}", which is neither in this corpus nor in the run, skipped`,
      );
    }
  }

  for (const f of listFiles(join(dir, "traces"), ".jsonl")) {
    counts.foreignTraces += readFileSync(f, "utf8").split("\n").filter((l) => l.trim()).length;
  }
  return { set: out, blobs: [...blobs].sort(), diagnostics: diags, upgrades, format, counts };
}
