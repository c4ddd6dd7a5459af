/**
 * Deno client of the Python evaluation harness (pipeline/harness/PROTOCOL.md).
 *
 * Writes the job file, runs the judge (`python3 pipeline/harness/judge`) detached in its own process
 * group (killed as a group on timeout or abort), validates the result with zod and turns results into
 * FlashInfer Evaluation objects.
 */
import { findPython } from "../lib/mod.ts";
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
} from "../trace/mod.ts";

/** The harness entry: the judge folder next to this module (Python runs its `__main__.py`). */
export const HARNESS_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "judge");

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
  /** Seconds per phase of the job (prepare, start_workers, gpu_warmup, cells, close_workers). */
  job_s: z.record(z.string(), z.number()).optional(),
});
export type HarnessResult = z.infer<typeof HarnessResult>;

/**
 * What the installed torch cannot do on the probed device: the `capabilities` field of the `probe` command's
 * result (PROTOCOL.md §2.1). A cell that fails on one of these is not runnable here, never a verdict.
 */
export const ProbeCapabilities = z.object({
  device: z.string(),
  torch: z.string(),
  /** How many capabilities were probed (torch attributes, and ops × float16/bfloat16 on the device). */
  checked: z.number().int().nonnegative(),
  missing: z.array(z.object({
    /** `torch.nn.functional.rms_norm` (attribute) or `addmm:float16:cpu` (op_dtype). */
    capability: z.string(),
    kind: z.enum(["attribute", "op_dtype"]),
    /** What torch said, e.g. `"addmm_impl_cpu_" not implemented for 'Half'`. */
    reason: z.string(),
  })),
});
export type ProbeCapabilities = z.infer<typeof ProbeCapabilities>;

/** The capabilities a `probe` result lists, or null when it has none (an older judge) or they are malformed. */
export function probeCapabilities(result: HarnessResult): ProbeCapabilities | null {
  const parsed = ProbeCapabilities.safeParse(result.probe?.capabilities);
  return parsed.success ? parsed.data : null;
}

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
  /** Interpreter; default: pipeline/lib/python.ts's choice. */
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
    const py = opts.python ?? (await findPython() ?? "python3");
    const r = await runGroup(py, args, {
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      env: opts.env,
    });
    if (r.timedOut) {
      throw new HarnessError(`harness ${command} exceeded ${opts.timeoutMs} ms`, r.stderr);
    }
    if (r.aborted) throw new HarnessError(`harness ${command} aborted`, r.stderr);
    return readResult(command, out, r.stderr, r.code);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Reads the validated result file a harness command wrote. */
function readResult(command: string, out: string, stderr: string, code: number | null) {
  let raw: string;
  try {
    raw = readFileSync(out, "utf8");
  } catch {
    throw new HarnessError(
      `harness ${command} wrote no result (exit ${code}): ${stderr.slice(-2000)}`,
      stderr,
    );
  }
  const parsed = HarnessResult.safeParse(JSON.parse(raw));
  if (!parsed.success) {
    throw new HarnessError(
      `harness ${command}: result.json invalid: ${parsed.error.message.slice(0, 2000)}`,
      stderr,
    );
  }
  return parsed.data;
}

/** Options of one job sent to a {@link HarnessSession}. */
export interface SessionRunOptions {
  /** Hard wall-clock limit for this job, in ms: on expiry the whole session is killed. */
  timeoutMs?: number;
  /** Abort: kills the whole session. */
  signal?: AbortSignal;
}

/** How much of the serving harness's stderr a session keeps for error messages. */
const STDERR_TAIL = 64 * 1024;

/**
 * A serving harness (`python3 pipeline/harness/judge serve`, PROTOCOL.md §7): one judge process that
 * answers jobs one after another, so torch, the CUDA context and the fork server are started once, not
 * once per job. The process runs in its own group; a timeout or abort kills the group and the session
 * is dead afterwards (`alive` false): start a new one.
 */
export class HarnessSession {
  #child: Deno.ChildProcess;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncGenerator<string>;
  #stderr = "";
  #dir: string;
  #seq = 0;
  #busy = false;
  #stderrDone: Promise<void>;
  /** False once the process exited or was killed. */
  alive = true;

  private constructor(child: Deno.ChildProcess, dir: string) {
    this.#child = child;
    this.#dir = dir;
    this.#stdin = child.stdin.getWriter();
    this.#lines = readLines(child.stdout);
    this.#stderrDone = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of child.stderr) {
        this.#stderr = (this.#stderr + dec.decode(chunk, { stream: true })).slice(-STDERR_TAIL);
      }
    })();
    child.status.then(() => this.alive = false);
    child.unref(); // an idle session never keeps this process alive: at exit its judge reads EOF and ends
  }

  /** Starts a serving harness (it is ready for jobs at once; the first one waits for its start-up). */
  static async start(opts: { python?: string; env?: Record<string, string> } = {}) {
    const py = opts.python ?? (await findPython() ?? "python3");
    const child = new Deno.Command(py, {
      args: [HARNESS_SCRIPT, "serve"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
      detached: true,
      env: opts.env,
    }).spawn();
    return new HarnessSession(child, mkdtempSync(join(tmpdir(), "tp-session-")));
  }

  /** The judge's process id (also its process group's). */
  get pid(): number {
    return this.#child.pid;
  }

  /** The last part of the harness's stderr (progress lines, tracebacks). */
  get stderrTail(): string {
    return this.#stderr;
  }

  #kill() {
    this.alive = false;
    try {
      Deno.kill(-this.#child.pid, "SIGKILL");
    } catch {
      // already gone
    }
  }

  /** Runs one command on a job in this session and returns the validated result (even when ok=false). */
  async run(
    command: "probe" | "compile" | "verify" | "time",
    job: Record<string, unknown> | null,
    opts: SessionRunOptions = {},
  ): Promise<HarnessResult> {
    if (!this.alive) {
      throw new HarnessError(`harness session is gone: ${this.#stderr.slice(-2000)}`);
    }
    if (this.#busy) throw new Error("HarnessSession.run: one job at a time");
    this.#busy = true;
    this.#child.ref();
    const id = ++this.#seq;
    const out = join(this.#dir, `result_${id}.json`);
    const jobPath = job ? join(this.#dir, `job_${id}.json`) : null;
    let timedOut = false;
    let aborted = false;
    const timer = opts.timeoutMs !== undefined
      ? setTimeout(() => {
        timedOut = true;
        this.#kill();
      }, opts.timeoutMs)
      : undefined;
    const onAbort = () => {
      aborted = true;
      this.#kill();
    };
    if (opts.signal?.aborted) onAbort();
    opts.signal?.addEventListener("abort", onAbort);
    try {
      if (jobPath) writeFileSync(jobPath, JSON.stringify(job));
      const request = JSON.stringify({ id, command, job: jobPath, out }) + "\n";
      await this.#stdin.write(new TextEncoder().encode(request)).catch(() => {});
      let code: number | null = null;
      for (;;) {
        const next = await this.#lines.next();
        if (next.done) break;
        const reply = parseReply(next.value);
        if (reply?.tp_error) {
          throw new HarnessError(`harness serve: ${reply.tp_error}`, this.#stderr);
        }
        if (reply && reply.tp_done === id) {
          code = typeof reply.code === "number" ? reply.code : null;
          break;
        }
      }
      if (timedOut) {
        throw new HarnessError(`harness ${command} exceeded ${opts.timeoutMs} ms`, this.#stderr);
      }
      if (aborted) throw new HarnessError(`harness ${command} aborted`, this.#stderr);
      if (code === null) {
        this.#kill();
        await this.#stderrDone.catch(() => {});
        throw new HarnessError(
          `harness session ended during ${command}: ${this.#stderr.slice(-2000)}`,
          this.#stderr,
        );
      }
      return readResult(command, out, this.#stderr, code);
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      for (const f of [out, jobPath]) if (f) rmSync(f, { force: true });
      this.#busy = false;
      this.#child.unref();
    }
  }

  /** Ends the session: closes its input (the harness exits after the current job) and waits for it. */
  async close(): Promise<void> {
    try {
      await this.#stdin.close();
    } catch {
      // already closed
    }
    const done = await Promise.race([
      this.#child.status.then(() => true),
      new Promise<false>((r) => setTimeout(() => r(false), 30_000)),
    ]);
    if (!done) this.#kill();
    await this.#child.status;
    await this.#stderrDone.catch(() => {});
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

function parseReply(line: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(line);
    return v && typeof v === "object" ? v as Record<string, unknown> : null;
  } catch {
    return null; // not a reply: the harness's stdout carries nothing else, but never trust that
  }
}

async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
  if (buf) yield buf;
}

/**
 * Up to `size` serving harnesses shared by concurrent jobs: `use` lends an idle session (starting one
 * when none is idle) and takes it back afterwards; a session that died is dropped, and the next job
 * starts a fresh one.
 */
export class SessionPool {
  #idle: HarnessSession[] = [];
  #all = new Set<HarnessSession>();

  constructor(readonly opts: { python?: string; env?: Record<string, string> } = {}) {}

  /** Runs `f` with a session of the pool. */
  async use<T>(f: (s: HarnessSession) => Promise<T>): Promise<T> {
    let s = this.#idle.pop();
    while (s && !s.alive) {
      this.#all.delete(s);
      s = this.#idle.pop();
    }
    if (!s) {
      s = await HarnessSession.start(this.opts);
      this.#all.add(s);
    }
    try {
      return await f(s);
    } finally {
      if (s.alive) this.#idle.push(s);
      else {
        this.#all.delete(s);
        await s.close();
      }
    }
  }

  /**
   * Starts idle sessions until `n` are idle, without waiting for their start-up: jobs given to them later
   * find torch, the CUDA context and the fork server ready, or wait for the rest of it.
   */
  async prestart(n: number): Promise<void> {
    this.#idle = this.#idle.filter((s) => s.alive);
    while (this.#idle.length < n) {
      const s = await HarnessSession.start(this.opts);
      this.#all.add(s);
      this.#idle.push(s);
    }
  }

  /** Sessions idle now. */
  get idleCount(): number {
    return this.#idle.length;
  }

  /** Closes idle sessions until at most `keep` remain. */
  async trim(keep: number): Promise<void> {
    const extra = this.#idle.splice(0, Math.max(0, this.#idle.length - keep));
    for (const s of extra) this.#all.delete(s);
    await Promise.all(extra.map((s) => s.close()));
  }

  /** Closes every session. */
  async close(): Promise<void> {
    const all = [...this.#all];
    this.#all.clear();
    this.#idle = [];
    await Promise.all(all.map((s) => s.close()));
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
 * {@link toEvaluation} checked against the project's FlashInfer schema (pipeline/trace/schema.ts):
 * returns a schema-valid Evaluation, or null when the cell was not judged.
 */
export function toTraceEvaluation(verify: HarnessCell, time?: HarnessCell): TraceEvaluation | null {
  const ev = toEvaluation(verify, time);
  return ev ? TraceEvaluationSchema.parse(evaluationToJson(ev)) : null;
}
