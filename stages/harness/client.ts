/**
 * Deno client of the Python evaluation harness (stages/harness/PROTOCOL.md).
 *
 * Writes the job file, runs `tracepipe_harness.py` detached in its own process group (killed as a group on
 * timeout or abort), validates the result with zod and turns results into FlashInfer Evaluation objects.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import {
  type Evaluation as TraceEvaluation,
  Evaluation as TraceEvaluationSchema,
  FloatOrSpecial,
  STATUSES,
} from "../../pipeline/schema/trace.ts";

/** The harness entry script, next to this module. */
export const HARNESS_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "tracepipe_harness.py");

/** The 7 statuses of the FlashInfer Trace format (re-exported from the schema). */
export { STATUSES };

/** A float FlashInfer may serialise as "Infinity"/"-Infinity"/"NaN". */
const FiFloat = FloatOrSpecial;

const HarnessEnvironment = z.object({
  hardware: z.string().min(1),
  libs: z.record(z.string(), z.string()),
});

/** Evaluation-shaped record produced by the harness (performance may be null after verify). */
export const HarnessEvaluation = z.object({
  status: z.enum(STATUSES),
  correctness: z.object({
    max_relative_error: FiFloat,
    max_absolute_error: FiFloat,
    extra: z.record(z.string(), z.unknown()).nullable().optional(),
  }).nullable(),
  performance: z.object({
    latency_ms: z.number().nonnegative(),
    reference_latency_ms: z.number().nonnegative(),
    speedup_factor: z.number().nonnegative(),
  }).nullable(),
  log: z.string(),
  environment: HarnessEnvironment,
  timestamp: z.string().min(1),
});
export type HarnessEvaluation = z.infer<typeof HarnessEvaluation>;

/** Outcomes that are not trace statuses (the harness did not judge the solution). */
export const OUTCOMES = [
  "evaluated",
  "built",
  "compile_error",
  "toolchain_unavailable",
  "not_runnable_here",
  "input_error",
  "reference_error",
] as const;

/** One entry of `results` (compile, verify or time). */
export const HarnessCell = z.object({
  solution: z.string(),
  workload: z.string().nullable().optional(),
  outcome: z.enum(OUTCOMES),
  reason: z.string().nullable().optional(),
  evaluation: HarnessEvaluation.nullable().optional(),
  details: z.record(z.string(), z.unknown()).optional(),
  // compile-only fields
  hash: z.string().optional(),
  cached: z.boolean().optional(),
  seconds: z.number().optional(),
  build_dir: z.string().nullable().optional(),
  log: z.string().optional(),
}).passthrough();
export type HarnessCell = z.infer<typeof HarnessCell>;

/** The RESULT.json document. */
export const HarnessResult = z.object({
  protocol: z.literal(1),
  command: z.enum(["probe", "compile", "verify", "time"]),
  ok: z.boolean(),
  error: z.string().nullable(),
  device: z.enum(["cuda", "cpu"]).optional(),
  environment: HarnessEnvironment.optional(),
  probe: z.record(z.string(), z.unknown()).optional(),
  results: z.array(HarnessCell),
});
export type HarnessResult = z.infer<typeof HarnessResult>;

/** A FlashInfer Evaluation (the format's status/field matrix holds). */
export interface FiEvaluation {
  status: (typeof STATUSES)[number];
  environment: { hardware: string; libs: Record<string, string> };
  timestamp: string;
  log: string;
  correctness: {
    max_relative_error: number;
    max_absolute_error: number;
    extra?: Record<string, unknown> | null;
  } | null;
  performance: { latency_ms: number; reference_latency_ms: number; speedup_factor: number } | null;
}

/** Options of one harness run. */
export interface RunOptions {
  /** Interpreter; default: see {@link choosePython}. */
  python?: string;
  /** Hard wall-clock limit for the whole harness process group, in ms. */
  timeoutMs?: number;
  /** Abort: kills the whole process group. */
  signal?: AbortSignal;
  /** Extra environment variables. */
  env?: Record<string, string>;
}

/** Thrown when the harness fails as a whole (timeout, abort, bad job, invalid result). */
export class HarnessError extends Error {
  constructor(message: string, readonly stderr = "") {
    super(message);
    this.name = "HarnessError";
  }
}

let cachedPython: string | undefined;

/** TRACEPIPE_PYTHON, else /usr/bin/python3 if it imports torch, else python3. */
export async function choosePython(): Promise<string> {
  const env = Deno.env.get("TRACEPIPE_PYTHON");
  if (env) return env;
  if (cachedPython) return cachedPython;
  try {
    const out = await new Deno.Command("/usr/bin/python3", {
      args: ["-c", "import torch"],
      stdout: "null",
      stderr: "null",
    }).output();
    cachedPython = out.success ? "/usr/bin/python3" : "python3";
  } catch {
    cachedPython = "python3";
  }
  return cachedPython;
}

/** Result of {@link runGroup}. */
export interface GroupResult {
  code: number | null;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  aborted: boolean;
}

/**
 * Runs a command detached in its own process group; on timeout or abort the whole group (children and
 * grandchildren) gets SIGKILL, so nothing the command started outlives it.
 */
export async function runGroup(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; signal?: AbortSignal; env?: Record<string, string>; cwd?: string } =
    {},
): Promise<GroupResult> {
  const child = new Deno.Command(cmd, {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    detached: true, // setsid: the child leads a new process group whose id is its pid
    env: opts.env,
    cwd: opts.cwd,
  }).spawn();
  let timedOut = false;
  let aborted = false;
  const killGroup = () => {
    try {
      Deno.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  };
  const timer = opts.timeoutMs !== undefined
    ? setTimeout(() => {
      timedOut = true;
      killGroup();
    }, opts.timeoutMs)
    : undefined;
  const onAbort = () => {
    aborted = true;
    killGroup();
  };
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener("abort", onAbort);
  try {
    const [status, out, err] = await Promise.all([
      child.status,
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
    ]);
    if (timedOut || aborted) killGroup(); // grandchildren may still hold the group
    return {
      code: status.code,
      signal: status.signal,
      stdout: out,
      stderr: err,
      timedOut,
      aborted,
    };
  } finally {
    if (timer !== undefined) clearTimeout(timer);
    opts.signal?.removeEventListener("abort", onAbort);
  }
}

/** Runs one harness command on a job and returns the validated result (even when ok=false). */
export async function runHarness(
  command: "probe" | "compile" | "verify" | "time",
  job: Record<string, unknown> | null,
  opts: RunOptions = {},
): Promise<HarnessResult> {
  const dir = mkdtempSync(join(tmpdir(), "tp-harness-"));
  try {
    const out = join(dir, "result.json");
    const args = [HARNESS_SCRIPT, command, "--out", out];
    if (job) {
      const jobPath = join(dir, "job.json");
      writeFileSync(jobPath, JSON.stringify(job));
      args.push("--job", jobPath);
    }
    const py = opts.python ?? await choosePython();
    const r = await runGroup(py, args, {
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      env: opts.env,
    });
    if (r.timedOut) {
      throw new HarnessError(`harness ${command} exceeded ${opts.timeoutMs} ms`, r.stderr);
    }
    if (r.aborted) throw new HarnessError(`harness ${command} aborted`, r.stderr);
    let raw: string;
    try {
      raw = readFileSync(out, "utf8");
    } catch {
      throw new HarnessError(
        `harness ${command} wrote no result (exit ${r.code}): ${r.stderr.slice(-2000)}`,
        r.stderr,
      );
    }
    const parsed = HarnessResult.safeParse(JSON.parse(raw));
    if (!parsed.success) {
      throw new HarnessError(
        `harness ${command}: result.json invalid: ${parsed.error.message.slice(0, 2000)}`,
        r.stderr,
      );
    }
    return parsed.data;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Turns a harness cell into a FlashInfer Evaluation, or null when the solution was not judged
 * (not runnable here, toolchain unavailable, input/reference error). A verify PASSED record has no
 * performance yet: pass the matching `time` cell to complete it; without one it stays PASSED only if
 * `allowMissingPerformance` (the format requires performance for PASSED).
 */
export function toEvaluation(
  verify: HarnessCell,
  time?: HarnessCell,
  allowMissingPerformance = false,
): FiEvaluation | null {
  const src = time?.evaluation ?? verify.evaluation;
  if (!src) return null;
  const ev: FiEvaluation = {
    status: src.status,
    environment: src.environment,
    timestamp: src.timestamp,
    log: src.log,
    correctness: src.correctness
      ? {
        max_relative_error: src.correctness.max_relative_error,
        max_absolute_error: src.correctness.max_absolute_error,
        extra: src.correctness.extra ?? null,
      }
      : null,
    performance: src.performance ?? null,
  };
  // Enforce the format's status/field matrix.
  if (ev.status === "PASSED") {
    if (!ev.performance && !allowMissingPerformance) return null;
  } else if (ev.status === "INCORRECT_NUMERICAL") {
    ev.performance = null;
  } else {
    ev.correctness = null;
    ev.performance = null;
  }
  return ev;
}

/** Serialises non-finite correctness errors the FlashInfer way ("Infinity", "NaN"). */
export function evaluationToJson(ev: FiEvaluation): Record<string, unknown> {
  const f = (x: number) =>
    Number.isNaN(x) ? "NaN" : x === Infinity ? "Infinity" : x === -Infinity ? "-Infinity" : x;
  return {
    ...ev,
    correctness: ev.correctness
      ? {
        ...ev.correctness,
        max_relative_error: f(ev.correctness.max_relative_error),
        max_absolute_error: f(ev.correctness.max_absolute_error),
      }
      : null,
  };
}

/**
 * {@link toEvaluation} checked against the project's FlashInfer schema (pipeline/schema/trace.ts):
 * returns a schema-valid Evaluation, or null when the cell was not judged.
 */
export function toTraceEvaluation(verify: HarnessCell, time?: HarnessCell): TraceEvaluation | null {
  const ev = toEvaluation(verify, time);
  return ev ? TraceEvaluationSchema.parse(evaluationToJson(ev)) : null;
}
