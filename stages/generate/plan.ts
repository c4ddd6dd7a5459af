/**
 * The generate stage's planners, one per backend: a cell per corpus directory, per kernel
 * manifest (parameter sweep) and per LLM campaign (definition × language × model). Each cell
 * carries a payload telling its runner (runners.ts) what to do.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { basename, isAbsolute, join, relative, resolve } from "node:path";
import {
  type CellPlan,
  digestJson,
  digestParts,
  formatDiagnostic,
  type PlanContext,
} from "../../pipeline/engine/mod.ts";
import { type Definition, listFiles, type Workload } from "../../pipeline/trace/mod.ts";
import { type AgentLanguage, modelSlug, PROMPT_FILES } from "./llm/agent.ts";
import type { GenerateParams } from "./params.ts";
import { loadManifest } from "./sweep.ts";
import type { Upstream } from "./upstream.ts";

/** A corpus cell's payload. */
export interface CorpusPayload {
  backend: "corpus";
  dir: string;
  label: string;
  /** The interpreter whose parser explains a Python solution that does not parse. */
  python?: string | null;
}

/** A sweep cell's payload. */
export interface SweepPayload {
  backend: "sweep";
  kernelDir: string;
  label: string;
  mode: "grid" | "default";
  gridRegex?: string;
}

/** An LLM campaign cell's payload. */
export interface LlmPayload {
  backend: "llm";
  definition: string;
  language: AgentLanguage;
  model: string;
  hardware: string;
  rounds: number;
  workload: Workload;
}

/** What a planned cell hands its runner. */
export type Payload = CorpusPayload | SweepPayload | LlmPayload;

/** Digest of every file under `dir` (relative path and bytes). */
function dirDigest(dir: string): string {
  const files = listFiles(dir, "");
  return digestParts(files.map((f) => [relative(dir, f), readFileSync(f)]));
}

const safeId = (s: string) => s.replace(/[^A-Za-z0-9_.-]+/g, "-");

/** Hands out cell ids, suffixing `-2`, `-3`, … to an id already taken. */
type UniqueId = (id: string) => string;

function uniqueIds(): UniqueId {
  const ids = new Set<string>();
  return (id) => {
    let out = id;
    for (let i = 2; ids.has(out); i++) out = `${id}-${i}`;
    ids.add(out);
    return out;
  };
}

/**
 * Plans every cell of the stage: corpora first, then sweeps, then LLM campaigns. That order
 * decides which cell keeps a contested id, so it must not change.
 */
export function planCells(
  ctx: PlanContext<GenerateParams>,
  up: Upstream,
  env: (name: string) => string | undefined,
): CellPlan[] {
  const uniqueId = uniqueIds();
  return [
    ...planCorpusCells(ctx, up, uniqueId),
    ...planSweepCells(ctx, up, uniqueId),
    ...planLlmCells(ctx, up, uniqueId, env),
  ];
}

/** One cell per corpus directory; a missing directory is a cell that cannot run. */
function planCorpusCells(
  ctx: PlanContext<GenerateParams>,
  up: Upstream,
  uniqueId: UniqueId,
): CellPlan[] {
  return ctx.params.corpus.map((c) => {
    const dir = isAbsolute(c) ? c : resolve(ctx.root, c);
    const payload: Payload = { backend: "corpus", dir, label: c };
    return {
      id: uniqueId(`corpus/${safeId(basename(dir))}`),
      params: { backend: "corpus", corpus: basename(dir) },
      inputs: {
        corpus: existsSync(dir) ? dirDigest(dir) : "missing",
        definitions: up.definitionDigest,
        extract: up.extractDigest,
      },
      // Python's own parser explains a solution that does not parse (its messages differ by
      // version), so the interpreter's version keys corpus cells.
      toolchain: { pythonSyntax: ctx.toolchain.python?.version ?? null },
      payload: { ...payload, python: ctx.toolchain.python?.path ?? null },
      ...(existsSync(dir) ? {} : { notRunnable: `corpus directory ${c} does not exist` }),
    };
  });
}

/**
 * One cell per `kernel.json` under the kernel roots (folders in sorted order); an invalid
 * manifest is a cell that cannot run, with the diagnostics as the reason.
 */
function planSweepCells(
  ctx: PlanContext<GenerateParams>,
  up: Upstream,
  uniqueId: UniqueId,
): CellPlan[] {
  const k = ctx.params.kernels;
  const include = k.include ? new RegExp(k.include) : null;
  const plans: CellPlan[] = [];
  for (const rootName of k.roots) {
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
        mode: k.mode,
        gridRegex: k.grid_regex,
      };
      plans.push({
        id: uniqueId(`sweep/${safeId(rootName)}-${safeId(folder)}`),
        params: {
          backend: "sweep",
          kernel: `${rootName}/${folder}`,
          mode: k.mode,
          grid_regex: k.grid_regex ?? null,
        },
        inputs: { kernel: dirDigest(join(rootDir, folder)), definitions: up.definitionDigest },
        payload,
        ...(manifest ? {} : { notRunnable: diagnostics.map(formatDiagnostic).join("; ") }),
      });
    }
  }
  return plans;
}

type LlmParams = GenerateParams["llm"];
type CampaignParams = LlmParams["campaigns"][number];

/** One cell per (campaign, matching definition), definitions in name order. */
function planLlmCells(
  ctx: PlanContext<GenerateParams>,
  up: Upstream,
  uniqueId: UniqueId,
  env: (name: string) => string | undefined,
): CellPlan[] {
  const plans: CellPlan[] = [];
  for (const camp of ctx.params.llm.campaigns) {
    const re = new RegExp(`^(?:${camp.definition})$`);
    const defs = [...up.definitions.values()].filter((d) => re.test(d.name))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    if (defs.length === 0) {
      ctx.log(`generate: llm campaign "${camp.definition}" matches no definition`);
    }
    const model = camp.model ?? env("TRACEPIPE_LLM_MODEL");
    for (const def of defs) plans.push(planLlmCell(ctx, up, uniqueId, camp, def, model));
  }
  return plans;
}

/** One workload chosen at random (seeded) for the feedback, as the paper's agent does. */
function pickWorkload(up: Upstream, def: Definition, workloadSeed: number): Workload | null {
  const ws = [...(up.workloads.get(def.name) ?? [])].sort((a, b) => (a.uuid < b.uuid ? -1 : 1));
  return ws.length
    ? ws[parseInt(digestJson([workloadSeed, def.name]).slice(0, 8), 16) % ws.length]
    : null;
}

/** Digest of the prompt templates, a missing one counting as "missing". */
function promptsDigest(root: string): string {
  return digestParts(
    PROMPT_FILES.map((f) => [
      f,
      existsSync(join(root, f)) ? readFileSync(join(root, f)) : "missing",
    ]),
  );
}

/** The campaign's cell for one definition; without a model or a workload it cannot run. */
function planLlmCell(
  ctx: PlanContext<GenerateParams>,
  up: Upstream,
  uniqueId: UniqueId,
  camp: CampaignParams,
  def: Definition,
  model: string | undefined,
): CellPlan {
  const p = ctx.params.llm;
  const hardware = camp.hardware ?? p.hardware;
  const rounds = camp.rounds ?? p.rounds;
  const pick = pickWorkload(up, def, p.workloadSeed);
  const id = uniqueId(`llm/${modelSlug(model ?? "no-model")}/${camp.language}/${safeId(def.name)}`);
  const notRunnable = !model
    ? "no model: set the campaign's model or TRACEPIPE_LLM_MODEL"
    : !pick
    ? `no workload for definition ${def.name} in the extract stage (the agent needs one for feedback)`
    : undefined;
  // Only what changes the answers enters the key: not transport settings, paths or mode.
  const { temperature, top_p, max_tokens, seed, reasoning_effort, budget, workloadSeed } = p;
  const sampling = { temperature, top_p, max_tokens, seed, reasoning_effort, budget, workloadSeed };
  return {
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
      prompts: promptsDigest(ctx.root),
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
  };
}
