/**
 * The LLM agent loop (paper Algorithm 1, as flashinfer-bench's kernel generator runs it): write a
 * solution for (definition, language, hardware); for each round evaluate it on one workload,
 * keep it if it PASSED with a better speedup, and ask for an improved version, feeding back the
 * best PASSED result so far, or else the last one (status, errors, latency, speedup, log).
 * Each round is a fresh two-message conversation (system + user), so requests stay bounded.
 *
 * Evaluations are recorded like chat exchanges (keyed by the solution's flashinfer-bench content
 * hash, the definition, the workload and the hardware label), so a replay needs no GPU and sees
 * exactly the feedback the recorded run saw.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  checkSolutionSignature,
  type Definition,
  type EvaluationStatus,
  formatDefinition,
  type Solution,
  Solution as SolutionSchema,
  solutionHash,
  type Workload,
} from "../../../pipeline/trace/mod.ts";
import { chat, type ChatOptions, type ChatRequest, LlmError, RecordingStore } from "./client.ts";

/** What one evaluation tells the agent. */
export interface Feedback {
  status: EvaluationStatus;
  log: string;
  max_absolute_error?: number | null;
  max_relative_error?: number | null;
  latency_ms?: number | null;
  reference_latency_ms?: number | null;
  speedup_factor?: number | null;
}

/** Compiles, verifies and times a solution on one workload (the harness, or a fake in tests). */
export type Evaluate = (
  solution: Solution,
  definition: Definition,
  workload: Workload,
) => Promise<Feedback>;

/** Languages the agent writes. */
export const AGENT_LANGUAGES = ["python", "triton", "cuda"] as const;
export type AgentLanguage = (typeof AGENT_LANGUAGES)[number];

/** Sampling settings sent with every request. */
export interface Sampling {
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  seed?: number;
  reasoning_effort?: string;
}

/** Token and cost limits of one campaign; reaching one stops the campaign before the next request. */
export interface Budget {
  maxTokens?: number;
  maxCostUsd?: number;
  inputUsdPerMTok: number;
  outputUsdPerMTok: number;
}

/** One campaign: a (definition, language, model) with its settings. */
export interface Campaign {
  definition: Definition;
  language: AgentLanguage;
  model: string;
  hardware: string;
  rounds: number;
  workload: Workload;
  sampling: Sampling;
  budget: Budget;
}

/** One round's outcome, as logged in campaign.json. */
export interface RoundLog {
  round: number;
  solution: string | null;
  status: EvaluationStatus | "NO_CODE";
  speedup_factor: number | null;
  latency_ms: number | null;
  prompt_tokens: number;
  completion_tokens: number;
  request: string;
}

/** The campaign's result. */
export interface CampaignResult {
  best: Solution | null;
  bestFeedback: Feedback | null;
  rounds: RoundLog[];
  stopped: "rounds" | "budget";
  tokens: { prompt: number; completion: number };
  costUsd: number;
}

/** Loaded prompt templates (file name → text). */
export type Prompts = Record<string, string>;

/** Prompt template files, relative to the repository root. */
export const PROMPT_FILES = [
  "prompts/llm/system.md",
  "prompts/llm/generate.md",
  "prompts/llm/optimize.md",
  "prompts/llm/language-python.md",
  "prompts/llm/language-triton.md",
  "prompts/llm/language-cuda.md",
];

/** Reads the prompt templates from `root`. */
export function loadPrompts(root: string): Prompts {
  const out: Prompts = {};
  for (const f of PROMPT_FILES) {
    try {
      out[f.split("/").pop()!.replace(/\.md$/, "")] = readFileSync(join(root, f), "utf8");
    } catch (e) {
      throw new LlmError(`${f}: cannot read prompt template: ${(e as Error).message}`);
    }
  }
  return out;
}

/** Fills `{{name}}` placeholders; an unknown placeholder is an error naming the template. */
export function render(template: string, vars: Record<string, string>, name: string): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_, k: string) => {
    if (!(k in vars)) throw new LlmError(`prompts/llm/${name}.md: unknown placeholder {{${k}}}`);
    return vars[k];
  });
}

/** The spec the agent's answers are packaged with, per language. */
function specFor(language: AgentLanguage, hardware: string): Solution["spec"] {
  return language === "cuda"
    ? {
      language,
      target_hardware: [hardware],
      entry_point: "main.cpp::run",
      dependencies: [],
      destination_passing_style: false,
      binding: "torch",
    }
    : {
      language,
      target_hardware: [hardware],
      entry_point: "main.py::run",
      dependencies: [],
      destination_passing_style: false,
      binding: null,
    };
}

/**
 * Extracts source files from an answer: `<file path="...">...</file>` blocks (a fence inside is
 * removed); for python/triton a single fenced block is accepted as `main.py`.
 */
export function extractFiles(
  text: string,
  language: AgentLanguage,
): Array<{ path: string; content: string }> {
  const files: Array<{ path: string; content: string }> = [];
  for (const m of text.matchAll(/<file\s+path\s*=\s*"([^"]+)"\s*>([\s\S]*?)<\/file>/g)) {
    let body = m[2].replace(/^\s*\n/, "");
    const fence = body.match(/^\s*```[\w+-]*\s*\n([\s\S]*?)\n\s*```\s*$/);
    if (fence) body = fence[1] + "\n";
    if (body.trim()) {
      files.push({ path: m[1].trim(), content: body.endsWith("\n") ? body : body + "\n" });
    }
  }
  if (files.length === 0 && language !== "cuda") {
    const fence = text.match(/```(?:python|py)?\s*\n([\s\S]*?)\n```/);
    if (fence && fence[1].trim()) files.push({ path: "main.py", content: fence[1] + "\n" });
  }
  return files;
}

/** A path-safe author/solution name fragment from a model id. */
export const modelSlug = (model: string) =>
  model.replace(/[^A-Za-z0-9_.-]+/g, "-").replace(/^-+|-+$/g, "") || "model";

const fmt = (v: number | null | undefined) => (v === null || v === undefined ? "n/a" : String(v));

function codeBlock(sol: Solution): string {
  return sol.sources.map((s) => `<file path="${s.path}">\n${s.content}</file>`).join("\n\n");
}

/** Runs one campaign. Never calls the endpoint or `evaluate` for a step that is recorded. */
export async function runCampaign(
  c: Campaign,
  prompts: Prompts,
  evaluate: Evaluate | null,
  opts: ChatOptions & { store: RecordingStore; logLimit?: number },
): Promise<CampaignResult> {
  const vars = promptVars(c, prompts);
  const result: CampaignResult = {
    best: null,
    bestFeedback: null,
    rounds: [],
    stopped: "rounds",
    tokens: { prompt: 0, completion: 0 },
    costUsd: 0,
  };
  let userPrompt = render(prompts.generate, vars, "generate");
  for (let round = 1; round <= c.rounds; round++) {
    if (budgetReached(c.budget, result)) {
      result.stopped = "budget";
      opts.log(
        `llm: ${c.definition.name}/${c.language}/${c.model}: budget reached after ${
          round - 1
        } round(s); stopping`,
      );
      break;
    }
    const shown = await runRound(c, prompts, userPrompt, round, result, evaluate, opts);
    if (round < c.rounds) {
      userPrompt = optimizePrompt(prompts, vars, shown, round, c, opts.logLimit ?? 4000);
    }
  }
  return result;
}

/** The placeholders every prompt of the campaign shares. */
function promptVars(c: Campaign, prompts: Prompts): Record<string, string> {
  const def = c.definition;
  const base = {
    language: c.language,
    hardware: c.hardware,
    definition_name: def.name,
    definition_json: formatDefinition(def).trimEnd(),
    input_names: Object.keys(def.inputs).join(", "),
    output_names: Object.keys(def.outputs).join(", "),
    rounds: String(c.rounds),
  };
  const langRules = render(prompts[`language-${c.language}`], base, `language-${c.language}`)
    .trimEnd();
  return { ...base, language_rules: langRules };
}

/** Checked before each request, so a campaign stops once it has spent its tokens or money. */
function budgetReached(b: Budget, result: CampaignResult): boolean {
  return (b.maxTokens !== undefined &&
    result.tokens.prompt + result.tokens.completion >= b.maxTokens) ||
    (b.maxCostUsd !== undefined && result.costUsd >= b.maxCostUsd);
}

/** A result and the code it came from, as the next round's prompt shows it. */
interface Shown {
  fb: Feedback;
  files: string;
}

/**
 * One round: asks for a solution, evaluates it, logs the round and keeps it if it is the best
 * so far. Returns what the next prompt shows: the best PASSED solution so far, else this round's.
 */
async function runRound(
  c: Campaign,
  prompts: Prompts,
  userPrompt: string,
  round: number,
  result: CampaignResult,
  evaluate: Evaluate | null,
  opts: ChatOptions & { store: RecordingStore },
): Promise<Shown> {
  const req: ChatRequest = {
    model: c.model,
    messages: [{ role: "system", content: prompts.system.trimEnd() }, {
      role: "user",
      content: userPrompt,
    }],
    ...c.sampling,
  };
  const { response } = await chat(req, opts);
  const usage = response.usage;
  result.tokens.prompt += usage.prompt_tokens;
  result.tokens.completion += usage.completion_tokens;
  result.costUsd += (usage.prompt_tokens * c.budget.inputUsdPerMTok +
    usage.completion_tokens * c.budget.outputUsdPerMTok) / 1e6;

  const files = extractFiles(response.content, c.language);
  const { sol, fb } = await judgeAnswer(files, round, c, evaluate, opts);
  result.rounds.push({
    round,
    solution: sol?.name ?? null,
    status: files.length === 0 ? "NO_CODE" : fb.status,
    speedup_factor: fb.speedup_factor ?? null,
    latency_ms: fb.latency_ms ?? null,
    prompt_tokens: usage.prompt_tokens,
    completion_tokens: usage.completion_tokens,
    request: RecordingStore.key("chat", req),
  });
  opts.log(
    `llm: ${c.definition.name}/${c.language}/${c.model}: round ${round}: ${fb.status}${
      fb.speedup_factor ? ` speedup ${fb.speedup_factor}` : ""
    }`,
  );
  if (
    sol && fb.status === "PASSED" &&
    (result.bestFeedback === null ||
      (fb.speedup_factor ?? 0) > (result.bestFeedback.speedup_factor ?? 0))
  ) {
    result.best = sol;
    result.bestFeedback = fb;
  }
  if (result.best && result.bestFeedback) {
    return { fb: result.bestFeedback, files: codeBlock(result.best) };
  }
  return {
    fb,
    files: sol
      ? codeBlock(sol)
      : files.length
      ? files.map((f) => `<file path="${f.path}">\n${f.content}</file>`).join("\n\n")
      : "(no code was extracted from the previous answer)",
  };
}

/**
 * Packages the answer's files as a solution and evaluates it. What cannot be packaged or fails
 * the signature check is a COMPILE_ERROR with the reason, so the next round can fix it.
 */
async function judgeAnswer(
  files: Array<{ path: string; content: string }>,
  round: number,
  c: Campaign,
  evaluate: Evaluate | null,
  opts: { store: RecordingStore },
): Promise<{ sol: Solution | null; fb: Feedback }> {
  if (files.length === 0) {
    return {
      sol: null,
      fb: {
        status: "COMPILE_ERROR",
        log:
          'no source files found in the answer: put every file in a <file path="...">...</file> block',
      },
    };
  }
  const author = modelSlug(c.model);
  const parsed = SolutionSchema.safeParse({
    name: `${author}_${c.definition.name}_${c.language}_r${round}`,
    definition: c.definition.name,
    author,
    description:
      `LLM agent (${c.model}), round ${round} of ${c.rounds}, ${c.language} for ${c.hardware}.`,
    spec: specFor(c.language, c.hardware),
    sources: files,
  });
  if (!parsed.success) {
    return {
      sol: null,
      fb: {
        status: "COMPILE_ERROR",
        log: `the answer is not a valid solution: ${
          parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")
        }`,
      },
    };
  }
  const sol = parsed.data;
  const sig = checkSolutionSignature(sol, c.definition);
  const fb: Feedback = sig.errors.length
    ? { status: "COMPILE_ERROR", log: `signature check failed: ${sig.errors.join("; ")}` }
    : await evaluateRecorded(sol, c, evaluate, opts);
  return { sol, fb };
}

/** The next round's request: the shown result's feedback and code, and what to do about it. */
function optimizePrompt(
  prompts: Prompts,
  vars: Record<string, string>,
  shown: Shown,
  round: number,
  c: Campaign,
  logLimit: number,
): string {
  const passed = shown.fb.status === "PASSED";
  return render(prompts.optimize, {
    ...vars,
    code: shown.files,
    round: String(round),
    status: shown.fb.status,
    max_absolute_error: fmt(shown.fb.max_absolute_error),
    max_relative_error: fmt(shown.fb.max_relative_error),
    latency_ms: fmt(shown.fb.latency_ms),
    reference_latency_ms: fmt(shown.fb.reference_latency_ms),
    speedup: fmt(shown.fb.speedup_factor),
    workload_axes: JSON.stringify(c.workload.axes),
    log: shown.fb.log.slice(0, logLimit) || "(empty)",
    instruction: passed
      ? "The implementation is correct. Make it faster while keeping it correct."
      : "The implementation is not correct. Fix the errors first; keep it fast.",
  }, "optimize");
}

/** Evaluates through the recording store: a recorded evaluation is reused, a new one recorded. */
async function evaluateRecorded(
  sol: Solution,
  c: Campaign,
  evaluate: Evaluate | null,
  opts: { store: RecordingStore },
): Promise<Feedback> {
  const key = {
    solution_hash: solutionHash(sol),
    definition: c.definition.name,
    workload: c.workload.uuid,
    hardware: c.hardware,
  };
  const rec = opts.store.get<Feedback>("evaluation", key);
  if (rec) return rec;
  if (!evaluate) {
    throw new LlmError(
      `no recorded evaluation ${
        opts.store.path(RecordingStore.key("evaluation", key))
      } for solution ${sol.name} and no evaluator (replay only)`,
    );
  }
  const fb = await evaluate(sol, c.definition, c.workload);
  opts.store.put("evaluation", key, fb);
  return fb;
}
