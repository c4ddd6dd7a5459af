/**
 * The corpus backend: imports the solutions (and definitions, workloads and blobs) of a FlashInfer
 * TraceSet directory, upgrading the 2025-08 draft format on the way (pipeline/trace/legacy.ts),
 * and checks every solution's entry point against its definition (pipeline/trace/signature.ts).
 * Problems are diagnostics naming the file and the reason; a bad file or solution is left out, the
 * rest is imported.
 */
import { existsSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { type Diagnostic, fromZodError } from "../../pipeline/engine/mod.ts";
import {
  checkSolutionSignature,
  Definition,
  emptyTraceSet,
  formatDefinition,
  isWorkloadTrace,
  listFiles,
  looksDraft,
  parseJsonOrDiagnose,
  Solution,
  Trace,
  type TraceSet,
  upgradeDefinition,
  upgradeSolution,
  upgradeTraceLine,
} from "../../pipeline/trace/mod.ts";

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

/**
 * A solution rejected by the entry-point and signature check (flashinfer-bench's rules): it parses
 * and its definition is known, so it can be written out with a failed trace, and count as a failure.
 */
export interface RejectedSolution {
  /** The corpus file, as diagnostics name it. */
  file: string;
  solution: Solution;
  definition: Definition;
  /** Why it was rejected (the check's errors). */
  reasons: string[];
}

/** Result of importing one corpus. */
export interface CorpusImport {
  /** The objects to write (definitions include every run definition the corpus's objects use). */
  set: TraceSet;
  /** Corpus-relative blob files referenced by imported workloads, to copy as they are. */
  blobs: string[];
  diagnostics: Diagnostic[];
  upgrades: UpgradeNote[];
  /** Solutions the entry-point and signature check rejected (generate writes them as failures). */
  rejected: RejectedSolution[];
  /** Every solution file left out, with the reasons: the rejected ones and those that do not parse. */
  rejections: Array<{ file: string; reason: string }>;
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

const readJson = (path: string, file: string, diags: Diagnostic[]) =>
  parseJsonOrDiagnose(readFileSync(path, "utf8"), file, diags);

/**
 * Imports the corpus at `dir`. `label` prefixes diagnostic file names (e.g. the corpus folder as
 * the user gave it), so messages name files the user can open.
 */
export function importCorpus(dir: string, run: RunContext, label = dir): CorpusImport {
  const imp = new CorpusImporter(dir, run, label);
  if (!existsSync(dir)) {
    imp.err(label, "$", "corpus directory does not exist");
    return imp.result("current");
  }
  const defFiles = listFiles(join(dir, "definitions"), ".json");
  const solFiles = listFiles(join(dir, "solutions"), ".json");
  const rawDefs = defFiles.map((f) => [f, readJson(f, imp.at(f), imp.diags)] as const);
  const rawSols = solFiles.map((f) => [f, readJson(f, imp.at(f), imp.diags)] as const);
  // One draft-looking file marks the whole corpus as draft: solutions are upgraded accordingly.
  const draft = [...rawDefs, ...rawSols].some(([, raw]) => looksDraft(raw));
  imp.importDefinitions(rawDefs);
  imp.importSolutions(rawSols, draft);
  // Draft files are named *.workload.jsonl; any .jsonl under workloads/ is read.
  for (const f of listFiles(join(dir, "workloads"), ".jsonl")) imp.importWorkloadFile(f);
  imp.countForeignTraces();
  return imp.result(draft ? "2025-08-draft" : "current");
}

type RawFile = readonly [path: string, raw: unknown];

/**
 * The state of one import as it goes: what is kept so far (`out`, `blobs`), the diagnostics and
 * the counts. Every problem is a diagnostic and the offending object is left out.
 */
class CorpusImporter {
  readonly diags: Diagnostic[] = [];
  readonly upgrades: UpgradeNote[] = [];
  readonly counts: CorpusImport["counts"] = {
    definitions: 0,
    solutions: 0,
    rejectedSolutions: 0,
    workloads: 0,
    skippedWorkloads: 0,
    foreignTraces: 0,
  };
  readonly out: TraceSet;
  readonly blobs = new Set<string>();
  readonly rejected: RejectedSolution[] = [];
  readonly rejections: CorpusImport["rejections"] = [];
  /** The corpus's own definitions that were imported (not those the run already had). */
  readonly own = new Map<string, Definition>();

  constructor(readonly dir: string, readonly run: RunContext, readonly label: string) {
    this.out = emptyTraceSet(dir);
  }

  /** The name diagnostics give to a file of the corpus. */
  at(p: string): string {
    return join(this.label, relative(this.dir, p));
  }

  err(file: string, path: string, message: string, line?: number) {
    this.diags.push({ level: "error", file, line, path, message });
  }

  warn(file: string, path: string, message: string, line?: number) {
    this.diags.push({ level: "warning", file, line, path, message });
  }

  /** A definition by name: the run's wins over the corpus's own. */
  lookup(name: string): Definition | undefined {
    return this.run.definitions.get(name) ?? this.own.get(name);
  }

  /** Adds a definition an imported object uses to the output, so the fragment is self-contained. */
  use(name: string): Definition {
    const def = this.lookup(name)!;
    this.out.definitions.set(name, def);
    return def;
  }

  result(format: CorpusImport["format"]): CorpusImport {
    return {
      set: this.out,
      blobs: [...this.blobs].sort(),
      diagnostics: this.diags,
      upgrades: this.upgrades,
      // A rejected solution whose name a later file's accepted solution took is not written: the
      // name belongs to the accepted one.
      rejected: this.rejected.filter((r) => !this.out.solutions.has(r.solution.name)),
      rejections: this.rejections,
      format,
      counts: this.counts,
    };
  }

  /** The corpus's own definitions, unless the run already has one of that name. */
  importDefinitions(rawDefs: RawFile[]) {
    for (const [f, raw] of rawDefs) {
      if (raw === undefined) continue;
      const up = upgradeDefinition(raw);
      if (!up.ok) {
        this.err(this.at(f), "$", `cannot upgrade: ${up.reason}`);
        continue;
      }
      if (up.changes.length) this.upgrades.push({ file: this.at(f), changes: up.changes });
      const p = Definition.safeParse(up.value);
      if (!p.success) {
        this.diags.push(...fromZodError(p.error, this.at(f)));
        continue;
      }
      const def = p.data;
      if (this.own.has(def.name)) {
        this.err(
          this.at(f),
          "$.name",
          `duplicate definition "${def.name}" in this corpus; the first one is kept`,
        );
        continue;
      }
      const existing = this.run.definitions.get(def.name);
      if (existing && formatDefinition(existing) !== formatDefinition(def)) {
        this.warn(
          this.at(f),
          "$",
          `definition "${def.name}" differs from the run's definition of that name; the run's definition is used`,
        );
        continue;
      }
      this.own.set(def.name, def);
      this.out.definitions.set(def.name, def); // the corpus's own definitions join the run
      this.counts.definitions++;
    }
  }

  importSolutions(rawSols: RawFile[], draft: boolean) {
    for (const [f, raw] of rawSols) {
      if (raw === undefined) {
        this.rejections.push({ file: this.at(f), reason: "malformed JSON" });
        continue;
      }
      const before = this.diags.length;
      const accepted = this.acceptSolution(this.at(f), raw, draft);
      if (!accepted) {
        this.counts.rejectedSolutions++;
        const errors = this.diags.slice(before).filter((d) => d.level === "error");
        this.rejections.push({
          file: this.at(f),
          reason: errors.map((d) => `${d.path}: ${d.message}`).join("; "),
        });
        continue;
      }
      this.use(accepted.def.name);
      this.out.solutions.set(accepted.sol.name, accepted.sol);
      this.counts.solutions++;
    }
  }

  /** The upgraded, parsed and signature-checked solution, or undefined after a diagnostic. */
  private acceptSolution(
    file: string,
    raw: unknown,
    draft: boolean,
  ): { sol: Solution; def: Definition } | undefined {
    const defName = (raw as { definition?: unknown })?.definition;
    const def = typeof defName === "string" ? this.lookup(defName) : undefined;
    // The upgrade needs the definition's output names to rewrite a draft entry point.
    const up = upgradeSolution(raw, draft, def ? Object.keys(def.outputs) : undefined);
    if (!up.ok) {
      this.err(file, "$.spec.entry_point", `cannot upgrade: ${up.reason}`);
      return undefined;
    }
    if (up.changes.length) this.upgrades.push({ file, changes: up.changes });
    const p = Solution.safeParse(up.value);
    if (!p.success) {
      this.diags.push(...fromZodError(p.error, file));
      return undefined;
    }
    const sol = p.data;
    if (!def) {
      this.err(
        file,
        "$.definition",
        `definition "${sol.definition}" is neither in this corpus nor in the run`,
      );
      return undefined;
    }
    if (this.out.solutions.has(sol.name)) {
      this.err(file, "$.name", `duplicate solution name "${sol.name}"; the first one is kept`);
      return undefined;
    }
    const check = checkSolutionSignature(sol, def);
    for (const w of check.warnings) this.warn(file, "$.spec.entry_point", w);
    if (check.errors.length > 0) {
      for (const e of check.errors) this.err(file, "$.spec.entry_point", e);
      this.rejected.push({ file, solution: sol, definition: def, reasons: check.errors });
      return undefined;
    }
    return { sol, def };
  }

  /**
   * Imports one workloads file, line by line. Workloads of unknown definitions are reported once
   * per definition, with their count, rather than once per line.
   */
  importWorkloadFile(f: string) {
    const seen = new Map<string, number>();
    const unknown = new Map<string, number>();
    readFileSync(f, "utf8").split("\n").forEach((text, i) => {
      if (!text.trim()) return;
      const t = this.acceptWorkload(f, text, i + 1, seen, unknown);
      if (!t) {
        this.counts.skippedWorkloads++;
        return;
      }
      for (const inp of Object.values(t.workload.inputs)) {
        if (inp.type === "safetensors") this.blobs.add(inp.path.replace(/^\.\//, ""));
      }
      this.use(t.definition);
      const list = this.out.workloads.get(t.definition) ?? [];
      this.out.workloads.set(t.definition, [...list, t.workload]);
      this.counts.workloads++;
    });
    for (const [name, n] of unknown) {
      this.err(
        this.at(f),
        "$.definition",
        `${n} workload(s) for definition "${name}", which is neither in this corpus nor in the run, skipped`,
      );
    }
  }

  /**
   * The workload trace on `line` of `f`, or undefined when it is skipped (with a diagnostic,
   * unless the run has it already or its definition is unknown, which `unknown` counts).
   */
  private acceptWorkload(
    f: string,
    text: string,
    line: number,
    seen: Map<string, number>,
    unknown: Map<string, number>,
  ): Trace | undefined {
    const raw = parseJsonOrDiagnose(text, this.at(f), this.diags, line);
    if (raw === undefined) return undefined;
    const up = upgradeTraceLine(raw, seen);
    if (!up.ok) {
      this.err(this.at(f), "$", `cannot upgrade: ${up.reason}`, line);
      return undefined;
    }
    const p = Trace.safeParse(up.value);
    if (!p.success) {
      this.diags.push(...fromZodError(p.error, this.at(f), line));
      return undefined;
    }
    const t = p.data;
    if (!isWorkloadTrace(t)) {
      this.err(this.at(f), "$.evaluation", "a workloads file may only hold workload traces", line);
      return undefined;
    }
    if (!this.lookup(t.definition)) {
      unknown.set(t.definition, (unknown.get(t.definition) ?? 0) + 1);
      return undefined;
    }
    if (this.run.workloadUuids.get(t.definition)?.has(t.workload.uuid)) return undefined;
    const list = this.out.workloads.get(t.definition) ?? [];
    if (list.some((w) => w.uuid === t.workload.uuid)) {
      this.err(this.at(f), "$.workload.uuid", `duplicate workload uuid "${t.workload.uuid}"`, line);
      return undefined;
    }
    return this.blobsPresent(f, t, line) ? t : undefined;
  }

  /** Whether every blob the workload references is a file inside the corpus (else a diagnostic). */
  private blobsPresent(f: string, t: Trace, line: number): boolean {
    for (const [name, inp] of Object.entries(t.workload.inputs)) {
      if (inp.type !== "safetensors") continue;
      const path = `$.workload.inputs.${name}.path`;
      if (inp.path.split(/[\\/]/).includes("..") || inp.path.startsWith("/")) {
        this.err(this.at(f), path, `blob path "${inp.path}" leaves the corpus`, line);
        return false;
      }
      if (!existsSync(join(this.dir, inp.path))) {
        this.err(this.at(f), path, `blob file "${inp.path}" does not exist`, line);
        return false;
      }
    }
    return true;
  }

  /** Evaluated traces are counted, not imported: they were timed on foreign hardware. */
  countForeignTraces() {
    for (const f of listFiles(join(this.dir, "traces"), ".jsonl")) {
      this.counts.foreignTraces += readFileSync(f, "utf8").split("\n").filter((l) => l.trim())
        .length;
    }
  }
}
