/**
 * The `generate` stage: collects candidate solutions from three backends, one cell each per
 * corpus directory, per kernel manifest (parameter sweeps) and per LLM campaign
 * (definition × language × model). Every cell writes a self-contained TraceSet fragment
 * (the definitions its objects use, solutions/, and for a corpus its workloads and blobs) plus
 * `generate-report.json` with the diagnostics. See docs/generate.md.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { basename, dirname, isAbsolute, join, relative, resolve } from "node:path";
import { z } from "zod";
import { type Diagnostic, formatDiagnostic } from "../../pipeline/engine/diagnostics.ts";
import { digestJson, digestParts } from "../../pipeline/engine/hash.ts";
import type { Definition, Workload } from "../../pipeline/trace/schema.ts";
import {
  type CellJob,
  type CellPlan,
  defineStage,
  type PlanContext,
  type Stage,
} from "../../pipeline/engine/stage.ts";
import {
  emptyTraceSet,
  listFiles,
  loadTraceSet,
  writeFileAtomic,
  writeTraceSet,
} from "../../pipeline/trace/traceset.ts";
import { importCorpus, type RunContext } from "./corpus.ts";
import {
  AGENT_LANGUAGES,
  type Evaluate,
  loadPrompts,
  modelSlug,
  PROMPT_FILES,
  runCampaign,
} from "./llm/agent.ts";
import { type EndpointConfig, RecordingStore } from "./llm/client.ts";
import { harnessEvaluate } from "./llm/harness_eval.ts";
import { buildSweep, loadManifest, matchDefinitions } from "./sweep.ts";
import { SWEEP_INDEX_FILE, type SweepIndexEntry } from "../../pipeline/trace/sweep_index.ts";

/** The corpora the default profile imports (copies of shared variants; see data/corpus/SOURCES.md). */
export const DEFAULT_CORPORA = [
  "data/corpus/pr221-gpt-5",
  "data/corpus/fib-example-ffi",
  "data/corpus/xslingcn-flashinfer-trace-2025-08",
];

const Campaign = z.object({
  /** Regex fully matched against definition names. */
  definition: z.string().min(1),
  language: z.enum(AGENT_LANGUAGES),
  /** Defaults to TRACEPIPE_LLM_MODEL at plan time. */
  model: z.string().min(1).optional(),
  hardware: z.string().min(1).optional(),
  rounds: z.number().int().positive().optional(),
});

/** The stage's params (defaults fill in what the profile leaves out). */
export const GenerateParams = z.object({
  corpus: z.array(z.string().min(1)).default(DEFAULT_CORPORA),
  kernels: z.object({
    roots: z.array(z.string().min(1)).default(["cuda", "triton", "baselines"]),
    mode: z.enum(["grid", "default"]).default("grid"),
    /** Optional regex over "<root>/<folder>" selecting kernels. */
    include: z.string().optional(),
    /** In grid mode, sweep the whole grid only on definitions matching this; others get the default point. */
    grid_regex: z.string().optional(),
  }).prefault({}),
  llm: z.object({
    campaigns: z.array(Campaign).default([]),
    rounds: z.number().int().positive().default(10),
    hardware: z.string().min(1).default("H100"),
    temperature: z.number().min(0).optional(),
    top_p: z.number().min(0).max(1).optional(),
    max_tokens: z.number().int().positive().optional(),
    seed: z.number().int().optional(),
    reasoning_effort: z.string().optional(),
    stream: z.boolean().default(true),
    timeoutMs: z.number().int().positive().default(600_000),
    maxRetries: z.number().int().min(0).max(10).default(4),
    backoffMs: z.number().int().min(0).default(1000),
    maxBackoffMs: z.number().int().min(0).default(60_000),
    budget: z.object({
      maxTokens: z.number().int().positive().optional(),
      maxCostUsd: z.number().positive().optional(),
      inputUsdPerMTok: z.number().min(0).default(0),
      outputUsdPerMTok: z.number().min(0).default(0),
    }).prefault({}),
    recordings: z.string().default("data/llm-recordings"),
    /** `replay`: never call the endpoint or the harness; a missing recording is an error. */
    mode: z.enum(["auto", "replay"]).default("auto"),
    workloadSeed: z.number().int().default(0),
  }).prefault({}),
});
export type GenerateParams = z.infer<typeof GenerateParams>;

type Payload =
  | { backend: "corpus"; dir: string; label: string }
  | {
    backend: "sweep";
    kernelDir: string;
    label: string;
    mode: "grid" | "default";
    gridRegex?: string;
  }
  | {
    backend: "llm";
    definition: string;
    language: (typeof AGENT_LANGUAGES)[number];
    model: string;
    hardware: string;
    rounds: number;
    workload: Workload;
  };

/** Injectable dependencies, so tests can fake the evaluator and the environment. */
export interface GenerateDeps {
  evaluate?: Evaluate;
  env?: (name: string) => string | undefined;
}

interface Upstream extends RunContext {
  workloads: Map<string, Workload[]>;
  definitionDigest: string;
  extractDigest: string;
}

function loadUpstream(ctx: PlanContext<GenerateParams>): Upstream {
  const definitions = new Map<string, Definition>();
  const workloads = new Map<string, Workload[]>();
  const defCells = ctx.upstream.definitions ?? [];
  const exCells = ctx.upstream.extract ?? [];
  for (const cell of [...defCells, ...exCells]) {
    const { set } = loadTraceSet(cell.dir);
    for (const [n, d] of set.definitions) if (!definitions.has(n)) definitions.set(n, d);
    for (const [n, ws] of set.workloads) workloads.set(n, [...(workloads.get(n) ?? []), ...ws]);
  }
  const workloadUuids = new Map(
    [...workloads].map(([n, ws]) => [n, new Set(ws.map((w) => w.uuid))]),
  );
  return {
    definitions,
    workloads,
    workloadUuids,
    definitionDigest: digestJson(defCells.map((c) => c.digest)),
    extractDigest: digestJson(exCells.map((c) => c.digest)),
  };
}

/** Digest of every file under `dir` (relative path and bytes). */
function dirDigest(dir: string): string {
  const files = listFiles(dir, "");
  return digestParts(files.map((f) => [relative(dir, f), readFileSync(f)]));
}

const safeId = (s: string) => s.replace(/[^A-Za-z0-9_.-]+/g, "-");

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

/** Builds the stage with injectable dependencies; `generateStage` is the production instance. */
export function createGenerateStage(deps: GenerateDeps = {}): Stage<GenerateParams> {
  const env = deps.env ?? ((n: string) => Deno.env.get(n));
  return defineStage<GenerateParams>({
    name: "generate",
    description:
      "Collect candidate solutions: corpus imports, kernel parameter sweeps, LLM agent campaigns",
    policy: "pure",
    params: GenerateParams as unknown as z.ZodType<GenerateParams>,
    // The endpoint and key are deliberately not declared: they must never enter a cell key.
    env: [],
    resource: "cpu",
    module: import.meta.url,
    toolchainFacts: () => ({}),

    plan(ctx) {
      const p = ctx.params;
      const up = loadUpstream(ctx);
      const plans: CellPlan[] = [];
      const ids = new Set<string>();
      const uniqueId = (id: string) => {
        let out = id;
        for (let i = 2; ids.has(out); i++) out = `${id}-${i}`;
        ids.add(out);
        return out;
      };

      for (const c of p.corpus) {
        const dir = isAbsolute(c) ? c : resolve(ctx.root, c);
        const payload: Payload = { backend: "corpus", dir, label: c };
        plans.push({
          id: uniqueId(`corpus/${safeId(basename(dir))}`),
          params: { backend: "corpus", corpus: basename(dir) },
          inputs: {
            corpus: existsSync(dir) ? dirDigest(dir) : "missing",
            definitions: up.definitionDigest,
            extract: up.extractDigest,
          },
          payload,
          ...(existsSync(dir) ? {} : { notRunnable: `corpus directory ${c} does not exist` }),
        });
      }

      const include = p.kernels.include ? new RegExp(p.kernels.include) : null;
      for (const rootName of p.kernels.roots) {
        const rootDir = resolve(ctx.root, rootName);
        if (!existsSync(rootDir)) continue;
        for (const folder of readdirSync(rootDir).sort()) {
          const manifestPath = join(rootDir, folder, "kernel.json");
          const label = `${rootName}/${folder}/kernel.json`;
          if (!existsSync(manifestPath) || (include && !include.test(`${rootName}/${folder}`))) {
            continue;
          }
          const { manifest, diagnostics } = loadManifest(manifestPath, label);
          const payload: Payload = {
            backend: "sweep",
            kernelDir: join(rootDir, folder),
            label,
            mode: p.kernels.mode,
            gridRegex: p.kernels.grid_regex,
          };
          plans.push({
            id: uniqueId(`sweep/${safeId(rootName)}-${safeId(folder)}`),
            params: {
              backend: "sweep",
              kernel: `${rootName}/${folder}`,
              mode: p.kernels.mode,
              grid_regex: p.kernels.grid_regex ?? null,
            },
            inputs: { kernel: dirDigest(join(rootDir, folder)), definitions: up.definitionDigest },
            payload,
            ...(manifest ? {} : { notRunnable: diagnostics.map(formatDiagnostic).join("; ") }),
          });
        }
      }

      for (const camp of p.llm.campaigns) {
        const re = new RegExp(`^(?:${camp.definition})$`);
        const defs = [...up.definitions.values()].filter((d) => re.test(d.name)).sort((
          a,
          b,
        ) => (a.name < b.name ? -1 : 1));
        if (defs.length === 0) {
          ctx.log(`generate: llm campaign "${camp.definition}" matches no definition`);
        }
        const model = camp.model ?? env("TRACEPIPE_LLM_MODEL");
        for (const def of defs) {
          const hardware = camp.hardware ?? p.llm.hardware;
          const rounds = camp.rounds ?? p.llm.rounds;
          const ws = [...(up.workloads.get(def.name) ?? [])].sort((
            a,
            b,
          ) => (a.uuid < b.uuid ? -1 : 1));
          // One workload chosen at random (seeded) for the feedback, as the paper's agent does.
          const pick = ws.length
            ? ws[parseInt(digestJson([p.llm.workloadSeed, def.name]).slice(0, 8), 16) % ws.length]
            : null;
          const id = uniqueId(
            `llm/${modelSlug(model ?? "no-model")}/${camp.language}/${safeId(def.name)}`,
          );
          const notRunnable = !model
            ? "no model: set the campaign's model or TRACEPIPE_LLM_MODEL"
            : !pick
            ? `no workload for definition ${def.name} in the extract stage (the agent needs one for feedback)`
            : undefined;
          // Only what changes the answers enters the key: not transport settings, paths or mode.
          const { temperature, top_p, max_tokens, seed, reasoning_effort, budget, workloadSeed } =
            p.llm;
          const sampling = {
            temperature,
            top_p,
            max_tokens,
            seed,
            reasoning_effort,
            budget,
            workloadSeed,
          };
          plans.push({
            id,
            params: {
              backend: "llm",
              definition: def.name,
              language: camp.language,
              model: model ?? null,
              hardware,
              rounds,
              ...sampling,
            },
            inputs: {
              definition: digestJson(def),
              workload: pick ? digestJson(pick) : "none",
              prompts: digestParts(
                PROMPT_FILES.map((
                  f,
                ) => [
                  f,
                  existsSync(join(ctx.root, f)) ? readFileSync(join(ctx.root, f)) : "missing",
                ]),
              ),
            },
            resource: "gpu",
            payload: pick && model
              ? {
                backend: "llm",
                definition: def.name,
                language: camp.language,
                model,
                hardware,
                rounds,
                workload: pick,
              } satisfies Payload
              : undefined,
            ...(notRunnable ? { notRunnable } : {}),
          });
        }
      }
      return Promise.resolve(plans);
    },

    async run(job: CellJob, ctx: PlanContext<GenerateParams>) {
      const payload = job.plan.payload as Payload;
      const up = loadUpstream(ctx);
      if (payload.backend === "corpus") {
        const imp = importCorpus(payload.dir, up, payload.label);
        writeTraceSet(imp.set, job.outDir);
        for (const b of imp.blobs) {
          mkdirSync(dirname(join(job.outDir, b)), { recursive: true });
          copyFileSync(join(payload.dir, b), join(job.outDir, b));
        }
        writeReport(
          job.outDir,
          {
            backend: "corpus",
            corpus: payload.label,
            format: imp.format,
            counts: imp.counts,
            upgrades: imp.upgrades,
          },
          imp.diagnostics,
          job.log,
        );
        job.setSummary({
          backend: "corpus",
          corpus: payload.label,
          format: imp.format,
          counts: imp.counts,
          solutions: [...imp.set.solutions.keys()],
        });
        return;
      }
      if (payload.backend === "sweep") {
        const { manifest, diagnostics } = loadManifest(
          join(payload.kernelDir, "kernel.json"),
          payload.label,
        );
        const set = emptyTraceSet(job.outDir);
        let index: SweepIndexEntry[] = [];
        const diags = [...diagnostics];
        if (manifest) {
          const defs = matchDefinitions(manifest, up.definitions.values());
          if (defs.length === 0) {
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
        writeFileAtomic(
          join(job.outDir, SWEEP_INDEX_FILE),
          JSON.stringify(index, null, 2) + "\n",
        );
        writeReport(
          job.outDir,
          { backend: "sweep", kernel: payload.label, solutions: index.length },
          diags,
          job.log,
        );
        job.setSummary({ backend: "sweep", kernel: manifest?.name ?? payload.label, sweep: index });
        return;
      }
      // LLM campaign.
      const p = ctx.params.llm;
      const def = up.definitions.get(payload.definition);
      if (!def) {
        throw new Error(`generate: definition ${payload.definition} is no longer in the run`);
      }
      const baseUrl = p.mode === "replay" ? undefined : env("TRACEPIPE_LLM_BASE_URL");
      const endpoint: EndpointConfig | undefined = baseUrl
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
      const store = new RecordingStore(resolve(ctx.root, p.recordings));
      const evaluate = p.mode === "replay" ? null : (deps.evaluate ?? harnessEvaluate(ctx.root));
      const sampling = Object.fromEntries(
        Object.entries({
          temperature: p.temperature,
          top_p: p.top_p,
          max_tokens: p.max_tokens,
          seed: p.seed,
          reasoning_effort: p.reasoning_effort,
        })
          .filter(([, v]) => v !== undefined),
      );
      const res = await runCampaign(
        {
          definition: def,
          language: payload.language,
          model: payload.model,
          hardware: payload.hardware,
          rounds: payload.rounds,
          workload: payload.workload,
          sampling,
          budget: p.budget,
        },
        loadPrompts(ctx.root),
        evaluate,
        { store, endpoint, log: job.log, signal: job.signal },
      );
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
    },
  });
}

/** The generate stage as the pipeline registers it. */
export const generateStage: Stage<GenerateParams> = createGenerateStage();
