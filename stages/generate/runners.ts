/**
 * The generate stage's runners, one per backend. Each writes a self-contained TraceSet fragment
 * into the cell's directory plus `generate-report.json` with the diagnostics, and sets the
 * cell's summary.
 */
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import {
  type CellJob,
  type Diagnostic,
  formatDiagnostic,
  type PlanContext,
  writeFileAtomic,
} from "../../pipeline/engine/mod.ts";
import {
  checkSolutionsSyntax,
  type Definition,
  emptyTraceSet,
  solutionPath,
  SWEEP_INDEX_FILE,
  type SweepIndexEntry,
  writeTraceSet,
} from "../../pipeline/trace/mod.ts";
import { type CorpusImport, importCorpus } from "./corpus.ts";
import { REJECTED_DIR, writeRejected } from "./rejected.ts";
import {
  type CampaignResult,
  type Evaluate,
  loadPrompts,
  runCampaign,
  type Sampling,
} from "./llm/agent.ts";
import { type EndpointConfig, RecordingStore } from "./llm/client.ts";
import { harnessEvaluate } from "./llm/harness_eval.ts";
import type { GenerateParams } from "./params.ts";
import type { CorpusPayload, LlmPayload, SweepPayload } from "./plan.ts";
import { buildSweep, loadManifest, matchDefinitions, unmetRequirement } from "./sweep.ts";
import type { Upstream } from "./upstream.ts";

function writeReport(
  outDir: string,
  report: Record<string, unknown>,
  diagnostics: Diagnostic[],
  log: (m: string) => void,
) {
  for (const d of diagnostics) log(formatDiagnostic(d));
  writeFileAtomic(
    join(outDir, "generate-report.json"),
    JSON.stringify({ ...report, diagnostics }, null, 2) + "\n",
  );
}

/** How many rejection reasons the console line quotes. */
const REASONS_ON_CONSOLE = 3;

/**
 * Imports one corpus: its objects, and the blob files its workloads reference, copied as they are.
 * The solutions the signature check rejects go to `rejected/` with a failed trace each
 * (rejected.ts); their count and first reasons reach the console through `consoleLog`.
 */
export async function runCorpusCell(
  job: CellJob,
  payload: CorpusPayload,
  up: Upstream,
  consoleLog: (m: string) => void = job.log,
): Promise<void> {
  const imp = importCorpus(payload.dir, up, payload.label);
  if (payload.python) await rejectUnparsable(imp, up, payload.python);
  writeTraceSet(imp.set, job.outDir);
  for (const b of imp.blobs) {
    mkdirSync(dirname(join(job.outDir, b)), { recursive: true });
    copyFileSync(join(payload.dir, b), join(job.outDir, b));
  }
  const written = writeRejected(job.outDir, imp.rejected, up);
  const rejected = imp.rejected.map((r) => ({
    solution: r.solution.name,
    definition: r.definition.name,
    file: r.file,
    reasons: r.reasons,
    trace: !written.withoutWorkload.includes(r.solution.name),
  }));
  writeReport(
    job.outDir,
    {
      backend: "corpus",
      corpus: payload.label,
      format: imp.format,
      counts: imp.counts,
      upgrades: imp.upgrades,
      rejected,
      rejections: imp.rejections,
    },
    imp.diagnostics,
    job.log,
  );
  if (imp.rejections.length) {
    const line = rejectionLine(payload.label, imp.rejections, written.traces);
    job.log(line);
    consoleLog(line);
  }
  job.setSummary({
    backend: "corpus",
    corpus: payload.label,
    format: imp.format,
    counts: imp.counts,
    solutions: [...imp.set.solutions.keys()],
    rejected: rejected.map((r) => r.solution),
  });
}

/** The console line of a corpus's rejections: how many, and the first few reasons. */
export function rejectionLine(
  label: string,
  rejections: Array<{ file: string; reason: string }>,
  traces: number,
): string {
  const first = rejections.slice(0, REASONS_ON_CONSOLE).map((r) => `${r.file}: ${r.reason}`);
  const more = rejections.length > REASONS_ON_CONSOLE
    ? `; … ${rejections.length - REASONS_ON_CONSOLE} more in generate-report.json`
    : "";
  return `corpus ${label}: ${rejections.length} solution${
    rejections.length === 1 ? "" : "s"
  } rejected (${traces} written to ${REJECTED_DIR}/ with a COMPILE_ERROR trace, counted as failures by aggregate): ${
    first.join("; ")
  }${more}`;
}

/**
 * Builds one kernel's parameter sweep over the run's matching definitions, writing the sweep
 * index beside the solutions. An invalid manifest still writes an empty fragment and the report.
 */
export function runSweepCell(job: CellJob, payload: SweepPayload, up: Upstream): void {
  const { manifest, diagnostics } = loadManifest(
    join(payload.kernelDir, "kernel.json"),
    payload.label,
  );
  const set = emptyTraceSet(job.outDir);
  let index: SweepIndexEntry[] = [];
  let leftOut: Array<{ definition: string; reason: string }> = [];
  const diags = [...diagnostics];
  if (manifest) {
    const matched = matchDefinitions(manifest, up.definitions.values());
    leftOut = matched.flatMap((d) => {
      const why = unmetRequirement(manifest, d);
      return why ? [{ definition: d.name, reason: why }] : [];
    });
    for (const l of leftOut) {
      diags.push({
        level: "warning",
        file: payload.label,
        path: l.reason.endsWith("($.dtypes)") ? "$.dtypes" : "$.requires",
        message: `${l.definition} left out: ${l.reason}`,
      });
    }
    const defs = matched.filter((d) => !leftOut.some((l) => l.definition === d.name));
    if (matched.length === 0) {
      diags.push({
        level: "warning",
        file: payload.label,
        path: "$.definition_regex",
        message: `matches no ${manifest.op_type} definition of the run`,
      });
    }
    const r = buildSweep(
      manifest,
      payload.kernelDir,
      defs,
      payload.mode,
      payload.label,
      payload.gridRegex ? new RegExp(payload.gridRegex) : undefined,
    );
    diags.push(...r.diagnostics);
    index = r.index;
    for (const s of r.solutions) {
      set.definitions.set(s.definition, up.definitions.get(s.definition)!);
      set.solutions.set(s.name, s);
    }
  }
  writeTraceSet(set, job.outDir);
  writeFileAtomic(join(job.outDir, SWEEP_INDEX_FILE), JSON.stringify(index, null, 2) + "\n");
  writeReport(
    job.outDir,
    { backend: "sweep", kernel: payload.label, solutions: index.length },
    diags,
    job.log,
  );
  job.setSummary({
    backend: "sweep",
    kernel: manifest?.name ?? payload.label,
    sweep: index,
    // Only when a requirement ruled a definition out, so other cells' summaries keep their shape.
    ...(leftOut.length ? { left_out: leftOut } : {}),
  });
}

/** What the LLM runner takes from outside the params (injectable in tests). */
export interface LlmRunnerDeps {
  evaluate?: Evaluate;
  env: (name: string) => string | undefined;
}

type LlmParams = GenerateParams["llm"];

/** The endpoint to call, or none in replay mode or when TRACEPIPE_LLM_BASE_URL is unset. */
function endpointFor(p: LlmParams, env: LlmRunnerDeps["env"]): EndpointConfig | undefined {
  const baseUrl = p.mode === "replay" ? undefined : env("TRACEPIPE_LLM_BASE_URL");
  return baseUrl
    ? {
      baseUrl,
      apiKey: env("TRACEPIPE_LLM_API_KEY"),
      stream: p.stream,
      timeoutMs: p.timeoutMs,
      maxRetries: p.maxRetries,
      backoffMs: p.backoffMs,
      maxBackoffMs: p.maxBackoffMs,
    }
    : undefined;
}

/** The sampling settings the params set; unset ones are left out of the requests altogether. */
function samplingOf(p: LlmParams): Sampling {
  return Object.fromEntries(
    Object.entries({
      temperature: p.temperature,
      top_p: p.top_p,
      max_tokens: p.max_tokens,
      seed: p.seed,
      reasoning_effort: p.reasoning_effort,
    }).filter(([, v]) => v !== undefined),
  );
}

/**
 * Runs one LLM campaign through the recording store and writes its best solution (if any) and
 * `llm-campaign.json` with every round.
 */
export async function runLlmCell(
  job: CellJob,
  ctx: PlanContext<GenerateParams>,
  payload: LlmPayload,
  up: Upstream,
  deps: LlmRunnerDeps,
): Promise<void> {
  const p = ctx.params.llm;
  const def = up.definitions.get(payload.definition);
  if (!def) {
    throw new Error(`generate: definition ${payload.definition} is no longer in the run`);
  }
  const endpoint = endpointFor(p, deps.env);
  const store = new RecordingStore(resolve(ctx.root, p.recordings));
  const evaluate = p.mode === "replay" ? null : (deps.evaluate ?? harnessEvaluate(ctx.root));
  const res = await runCampaign(
    {
      definition: def,
      language: payload.language,
      model: payload.model,
      hardware: payload.hardware,
      rounds: payload.rounds,
      workload: payload.workload,
      sampling: samplingOf(p),
      budget: p.budget,
    },
    loadPrompts(ctx.root),
    evaluate,
    { store, endpoint, log: job.log, signal: job.signal },
  );
  writeCampaignOutputs(job, def, payload, res);
}

function writeCampaignOutputs(
  job: CellJob,
  def: Definition,
  payload: LlmPayload,
  res: CampaignResult,
): void {
  const set = emptyTraceSet(job.outDir);
  if (res.best) {
    set.definitions.set(def.name, def);
    set.solutions.set(res.best.name, res.best);
  }
  writeTraceSet(set, job.outDir);
  const campaign = {
    backend: "llm",
    definition: def.name,
    language: payload.language,
    model: payload.model,
    hardware: payload.hardware,
    workload: payload.workload.uuid,
    best: res.best?.name ?? null,
    best_feedback: res.bestFeedback,
    stopped: res.stopped,
    tokens: res.tokens,
    cost_usd: res.costUsd,
    rounds: res.rounds,
  };
  writeFileAtomic(
    join(job.outDir, "llm-campaign.json"),
    JSON.stringify(campaign, null, 2) + "\n",
  );
  writeReport(
    job.outDir,
    { backend: "llm", best: campaign.best, stopped: res.stopped },
    [],
    job.log,
  );
  job.setSummary({
    backend: "llm",
    best: campaign.best,
    stopped: res.stopped,
    rounds: res.rounds.length,
    passed: res.rounds.filter((r) => r.status === "PASSED").length,
  });
}

/**
 * Python's parser has the last word on Python sources: an accepted solution that does not parse is
 * rejected (flashinfer-bench would fail it at load, COMPILE_ERROR), and a rejected one whose entry
 * symbol "is not defined" because its file does not parse gets the syntax error, with its line,
 * instead.
 */
async function rejectUnparsable(imp: CorpusImport, up: Upstream, python: string): Promise<void> {
  const candidates = [...imp.set.solutions.values(), ...imp.rejected.map((r) => r.solution)];
  const problems = await checkSolutionsSyntax(candidates, python);
  for (const p of problems ?? []) {
    const reason = `${p.file} does not parse: ${p.message}`;
    const r = imp.rejected.find((x) => x.solution.name === p.solution);
    if (r) {
      const others = r.reasons.filter((x) => !/entry symbol .* is not defined/.test(x));
      r.reasons.splice(0, r.reasons.length, reason, ...others);
      continue;
    }
    const sol = imp.set.solutions.get(p.solution);
    const def = sol &&
      (imp.set.definitions.get(sol.definition) ?? up.definitions.get(sol.definition));
    if (!sol || !def) continue;
    imp.set.solutions.delete(sol.name);
    imp.counts.solutions--;
    imp.counts.rejectedSolutions++;
    const file = solutionPath(sol, def.op_type);
    imp.rejected.push({ file, solution: sol, definition: def, reasons: [reason] });
    imp.rejections.push({ file, reason });
  }
}
