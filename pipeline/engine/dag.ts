/**
 * Plan and execute: for each stage in order, plan its cells, key them, reuse what the store has,
 * run the rest with per-resource parallelism limits, and record the run. The dry planning behind
 * `status` and `why` is in status.ts.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { codeDigest } from "./codegraph.ts";
import { digestJson } from "./hash.ts";
import { interruptOnSignals } from "./interrupt.ts";
import {
  ParamError,
  paramProblem,
  type ParamSources,
  parseParams,
  PipelineError,
} from "./params.ts";
import { type BuilderInfo, builderInfo } from "./provenance.ts";
import type {
  CellJob,
  CellPlan,
  CellResult,
  PipelineStage,
  PlanContext,
  Resource,
} from "./stage.ts";
import type { Store } from "./store.ts";
import { discoverToolchain, probeGpusOnce, type Toolchain } from "./toolchain.ts";

/** Bump to invalidate every cell (a bug in how results were computed). */
export const KEY_FORMAT = "tracepipe/cell-v1";

// deno-lint-ignore no-explicit-any
export type AnyStage = PipelineStage<any>;

/** What to run. */
export interface PipelineOptions {
  root: string;
  store: Store;
  stages: AnyStage[];
  /** Raw params per stage name (from the profile), validated by each stage's schema. */
  rawParams: Record<string, unknown>;
  /** Where the params came from, for error messages. */
  paramsSource?: string;
  /** The `STAGE.KEY` paths given by `--set`: a bad value there is blamed on the `--set`. */
  paramOverrides?: string[];
  /**
   * Stops the run when aborted (the CLI's SIGINT/SIGTERM handler): finished cells are kept, the
   * unfinished ones are reported as interrupted. Without it the run listens for SIGINT and SIGTERM
   * itself while it lasts.
   */
  signal?: AbortSignal;
  from?: string;
  to?: string;
  only?: string[];
  /** true: re-run every selected cell; a list: re-run the cells of these stages. */
  force?: boolean | string[];
  limits?: Partial<Record<Resource, number>>;
  /** Takes only some of each stage's cells (one shard of a run spread over machines). */
  cellFilter?: CellFilter;
  toolchain?: Toolchain;
  log?: (line: string) => void;
  salt?: string;
  /** Silence, in ms, after which a stage with cells still running says so (default 10 s). */
  heartbeatMs?: number;
}

/**
 * Which planned cells a run takes. The others are neither run nor recorded in the stage's run
 * index (not even as not runnable), so the run indexes of runs that split the cells between them
 * unite, through `import`, into one run's.
 */
export interface CellFilter {
  /** Names the share in the log, e.g. `shard 1/3`. */
  label: string;
  /** Whether this run takes the cell; it must depend only on the stage and the cell's id. */
  admits(stage: string, cellId: string): boolean;
}

/** What happened to one stage. */
export interface StageReport {
  stage: string;
  /** "ran" (planned and executed), "reused" (taken from the last recorded run), "blocked". */
  mode: "ran" | "reused" | "blocked";
  planned: number;
  hits: number;
  ran: number;
  failed: Array<{ id: string; error: string }>;
  /**
   * Cells a Ctrl-C or SIGTERM left unfinished (queued or in flight). Not failures: nothing is
   * recorded for them, so the next run plans them again.
   */
  interrupted: string[];
  notRunnable: Array<{ id: string; reason: string }>;
  ms: number;
  note?: string;
}

/** A stage's report before anything is counted: ran, nothing planned; `over` sets what is known. */
export const stageReport = (stage: string, over: Partial<StageReport> = {}): StageReport => ({
  stage,
  mode: "ran",
  planned: 0,
  hits: 0,
  ran: 0,
  failed: [],
  interrupted: [],
  notRunnable: [],
  ms: 0,
  ...over,
});

export { ParamError, parseParams, PipelineError };

/** Where the params of a run came from. */
export const paramSources = (opts: PipelineOptions): ParamSources => ({
  file: opts.paramsSource,
  overrides: opts.paramOverrides,
});

const nowIso = () => new Date().toISOString();

/** Validates the order and names of stages, returning the set selected to run. */
export function selectStages(
  stages: AnyStage[],
  opts: Pick<PipelineOptions, "from" | "to" | "only">,
): {
  run: Set<string>;
  last: number;
} {
  const names = stages.map((s) => s.name);
  const idx = (n: string, flag: string) => {
    const i = names.indexOf(n);
    if (i < 0) {
      throw new PipelineError(`${flag}: unknown stage "${n}" (stages: ${names.join(", ")})`);
    }
    return i;
  };
  const first = opts.from ? idx(opts.from, "--from") : 0;
  const last = opts.to ? idx(opts.to, "--to") : names.length - 1;
  if (first > last) throw new PipelineError(`--from ${opts.from} comes after --to ${opts.to}`);
  const run = new Set<string>();
  if (opts.only?.length) {
    for (const n of opts.only) run.add(names[idx(n, "--only")]);
  } else {
    for (let i = first; i <= last; i++) run.add(names[i]);
  }
  const lastNeeded = Math.max(last, ...[...run].map((n) => names.indexOf(n)));
  return { run, last: lastNeeded };
}

/** The canonical key document of a cell. */
export function keyDocument(
  stage: AnyStage,
  plan: CellPlan,
  code: string,
  env: Record<string, string>,
  tc: Toolchain,
  salt: string,
  invocationId: string,
): Record<string, unknown> {
  return {
    format: KEY_FORMAT,
    salt,
    stage: stage.name,
    cell: plan.id,
    policy: stage.policy,
    code,
    params: plan.params ?? null,
    inputs: plan.inputs,
    env,
    toolchain: { deno: tc.deno, ...stage.toolchainFacts(tc), ...(plan.toolchain ?? {}) },
    // A volatile stage re-runs every time, yet every run is still recorded.
    ...(stage.policy === "volatile" ? { nonce: invocationId } : {}),
  };
}

/** The values of the env vars a stage declares (unset ones are absent: they add nothing to a key). */
export function stageEnv(stage: { env: string[] }): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of stage.env) {
    const v = Deno.env.get(name);
    if (v !== undefined) env[name] = v;
  }
  return env;
}

/** A counting semaphore. */
class Pool {
  private active = 0;
  private waiting: Array<() => void> = [];
  constructor(private readonly size: number) {}
  async run<T>(f: () => Promise<T>): Promise<T> {
    if (this.active >= this.size) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await f();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

/** A stage's planned cells with their keys (also what `status` and `why` compare). */
export interface PlannedStage {
  stage: AnyStage;
  ctx: PlanContext<unknown>;
  plans: CellPlan[];
  keys: Map<string, { key: string; doc: Record<string, unknown> }>;
}

/** Plans one stage's cells and keys them. */
export async function planStage(
  stage: AnyStage,
  upstream: Record<string, CellResult[]>,
  opts: PipelineOptions,
  tc: Toolchain,
  builder: BuilderInfo,
): Promise<PlannedStage> {
  const params = parseParams(stage, opts.rawParams[stage.name], paramSources(opts));
  const env = stageEnv(stage);
  const ctx: PlanContext<unknown> = {
    params,
    root: opts.root,
    upstream,
    toolchain: tc,
    env,
    log: (m) => (opts.log ?? console.log)(`[${stage.name}] ${m}`),
  };
  let plans: CellPlan[];
  try {
    plans = await stage.plan(ctx);
  } catch (e) {
    // A value the schema let through but the stage cannot use: one line naming its source.
    if (e instanceof ParamError) {
      throw new PipelineError(paramProblem(paramSources(opts), stage.name, e.path, e.message));
    }
    throw e;
  }
  const ids = new Set<string>();
  for (const p of plans) {
    if (ids.has(p.id)) throw new PipelineError(`stage ${stage.name} planned cell "${p.id}" twice`);
    ids.add(p.id);
  }
  const code = codeDigest(opts.root, stage.module, stage.codeFiles).digest;
  const keys = new Map<string, { key: string; doc: Record<string, unknown> }>();
  for (const p of plans) {
    const doc = keyDocument(stage, p, code, env, tc, opts.salt ?? "", builder.invocationId);
    keys.set(p.id, { key: digestJson(doc), doc });
  }
  return { stage, ctx, plans, keys };
}

/**
 * Checks the params of every stage the run includes before any cell runs (a typo in the time
 * stage's params must not surface only after minutes of compiling), then lets each stage start its
 * background preparation (Stage.prewarm). Throws a PipelineError naming each bad field.
 */
function checkAndPrewarmStages(opts: PipelineOptions, run: Set<string>): void {
  const params = new Map<string, unknown>();
  const problems: string[] = [];
  for (const stage of opts.stages) {
    if (!run.has(stage.name)) continue;
    try {
      params.set(stage.name, parseParams(stage, opts.rawParams[stage.name], paramSources(opts)));
    } catch (e) {
      if (!(e instanceof PipelineError)) throw e;
      problems.push(e.message);
    }
  }
  if (problems.length) throw new PipelineError(problems.join("\n"));
  const gpus = opts.toolchain ? Promise.resolve(opts.toolchain.gpus) : probeGpusOnce();
  for (const stage of opts.stages) {
    if (stage.prewarm && params.has(stage.name)) stage.prewarm(params.get(stage.name), gpus);
  }
}

/** What a run did. */
export interface PipelineResult {
  reports: StageReport[];
  /** Every selected cell finished (none failed, the run was not interrupted). */
  ok: boolean;
  /** The stage at which an interruption stopped the run (later stages did not run). */
  stoppedAt?: string;
}

/**
 * A cell can run for minutes (a CPU reference, a cold build): `beat` is asked every second (or every
 * `silenceMs`, when shorter) whether to say the stage is alive; it decides from the stage's last line.
 * Returns the function that stops it.
 */
function startHeartbeat(silenceMs: number, beat: () => void): () => void {
  const timer = setInterval(beat, Math.min(1000, silenceMs));
  return () => clearInterval(timer);
}

/** Runs the pipeline. Never throws for a failing cell: failures are reported per cell. */
export async function runPipeline(opts: PipelineOptions): Promise<PipelineResult> {
  const own = opts.signal ? null : interruptOnSignals();
  try {
    return await runStages(opts, opts.signal ?? own!.signal);
  } finally {
    own?.dispose();
  }
}

async function runStages(opts: PipelineOptions, signal: AbortSignal): Promise<PipelineResult> {
  const log = opts.log ?? console.log;
  const { run, last } = selectStages(opts.stages, opts);
  checkAndPrewarmStages(opts, run);
  const tc = opts.toolchain ?? await discoverToolchain();
  const builder = await builderInfo(opts.root);
  const results: Record<string, CellResult[]> = {};
  const reports: StageReport[] = [];
  // A stage that does not run is read from the store only if a running stage consumes it.
  const needed = new Set(opts.stages.filter((s) => run.has(s.name)).flatMap((s) => s.upstream));
  let ok = true;
  for (const [i, stage] of opts.stages.entries()) {
    if (i > last) break;
    if (!run.has(stage.name) && !needed.has(stage.name)) continue;
    if (!run.has(stage.name)) {
      const report = reuseStage(stage, opts.store);
      results[stage.name] = opts.store.lastResults(stage.name)!;
      reports.push(report);
      continue;
    }
    const upstream: Record<string, CellResult[]> = {};
    for (const u of stage.upstream) {
      if (!results[u]) {
        throw new PipelineError(`stage ${stage.name} needs "${u}", which is not defined before it`);
      }
      upstream[u] = results[u];
    }
    if (signal.aborted) {
      log(`[${stage.name}] interrupted before it started; it and later stages were not run`);
      return { reports, ok: false, stoppedAt: stage.name };
    }
    const t0 = performance.now();
    const planned = takeShare(await planStage(stage, upstream, opts, tc, builder), opts, log);
    const r = await runPlannedStage(planned, opts, tc, builder, signal);
    r.report.ms = performance.now() - t0;
    results[stage.name] = r.results;
    reports.push(r.report);
    if (r.report.failed.length) ok = false;
    if (r.interrupted) {
      log(
        `[${stage.name}] interrupted: ${r.report.ran} finished cells are kept; ` +
          `${r.report.interrupted.length} unfinished cells were not recorded and run next time; ` +
          "later stages were not run",
      );
      return { reports, ok: false, stoppedAt: stage.name };
    }
  }
  return { reports, ok };
}

/** The planned cells `opts.cellFilter` admits, with their keys (all of them without a filter). */
function takeShare(
  planned: PlannedStage,
  opts: PipelineOptions,
  log: (line: string) => void,
): PlannedStage {
  const filter = opts.cellFilter;
  const name = planned.stage.name;
  const plans = filter ? planned.plans.filter((p) => filter.admits(name, p.id)) : planned.plans;
  if (plans.length === planned.plans.length) return planned;
  log(`[${name}] ${filter!.label}: ${plans.length} of ${planned.plans.length} cells`);
  const keys = new Map(plans.map((p) => [p.id, planned.keys.get(p.id)!]));
  return { ...planned, plans, keys };
}

/** A stage the run does not include, read from its last recorded run. */
function reuseStage(stage: AnyStage, store: Store): StageReport {
  const t0 = performance.now();
  const prev = store.lastResults(stage.name);
  if (prev === null) {
    throw new PipelineError(
      `stage ${stage.name} has no recorded run in ${store.root}; run it first (without --from/--only)`,
    );
  }
  return stageReport(stage.name, {
    mode: "reused",
    planned: prev.length,
    hits: prev.length,
    ms: performance.now() - t0,
  });
}

/** Looks a planned stage's cells up in the store, runs the missing ones and records the run. */
async function runPlannedStage(
  planned: PlannedStage,
  opts: PipelineOptions,
  tc: Toolchain,
  builder: BuilderInfo,
  signal: AbortSignal,
): Promise<{ report: StageReport; results: CellResult[]; interrupted: boolean }> {
  const log = opts.log ?? console.log;
  const { stage } = planned;
  const forced = opts.force === true ||
    (Array.isArray(opts.force) && opts.force.includes(stage.name));
  const report = stageReport(stage.name, { planned: planned.plans.length });
  const finished = new Map<string, CellResult>();
  const todo: CellPlan[] = [];
  for (const p of planned.plans) {
    if (p.notRunnable) {
      report.notRunnable.push({ id: p.id, reason: p.notRunnable });
      continue;
    }
    const hit = forced ? null : opts.store.get(stage.name, planned.keys.get(p.id)!.key);
    if (hit) {
      finished.set(p.id, hit);
      report.hits++;
    } else todo.push(p);
  }
  log(
    `[${stage.name}] ${planned.plans.length} cells: ${report.hits} cached, ${todo.length} to run` +
      (report.notRunnable.length ? `, ${report.notRunnable.length} not runnable here` : ""),
  );
  const interrupted = todo.length > 0 &&
    await executeCells(planned, todo, opts, tc, builder, finished, report, signal);
  const ordered = planned.plans.map((p) => finished.get(p.id)).filter((c): c is CellResult => !!c);
  opts.store.writeRun({
    stage: stage.name,
    finishedAt: nowIso(),
    cells: ordered.map((c) => ({ id: c.id, key: c.key })),
    notRunnable: report.notRunnable,
    failed: report.failed,
    keyDocuments: Object.fromEntries([...planned.keys].map(([id, k]) => [id, k.doc])),
  });
  for (const f of report.failed.slice(0, 10)) log(`[${stage.name}] FAILED ${f.id}: ${f.error}`);
  if (report.failed.length > 10) {
    log(`[${stage.name}] … and ${report.failed.length - 10} more failures`);
  }
  for (const n of report.notRunnable.slice(0, 3)) {
    log(`[${stage.name}] not runnable here: ${n.id}: ${n.reason}`);
  }
  if (report.notRunnable.length > 3) {
    log(`[${stage.name}] … ${report.notRunnable.length - 3} more cells not runnable here`);
  }
  const results = ordered.map(({ id, key, digest, dir, summary }) => ({
    id,
    key,
    digest,
    dir,
    summary,
  }));
  return { report, results, interrupted };
}

async function executeCells(
  planned: PlannedStage,
  todo: CellPlan[],
  opts: PipelineOptions,
  tc: Toolchain,
  builder: BuilderInfo,
  finished: Map<string, CellResult>,
  report: StageReport,
  signal: AbortSignal,
): Promise<boolean> {
  const log = opts.log ?? console.log;
  const { stage, ctx } = planned;
  // Ctrl-C or a `timeout`/scheduler SIGTERM (the run's signal) stops the cells cleanly: harness
  // process groups are killed, finished cells stay in the store, unfinished ones leave nothing.
  const started = new Map<string, { t0: number; startedOn: string; tmp: string }>();
  const summaries = new Map<string, unknown>();
  const facts = new Map<string, Record<string, unknown>>();
  const total = todo.length;
  let done = 0;
  let lastPrint = 0;
  const progress = (force = false) => {
    const now = performance.now();
    if (!force && now - lastPrint < 2000) return;
    lastPrint = now;
    const stopped = report.interrupted.length;
    log(
      `[${stage.name}] ${done}/${total} run${
        report.failed.length ? ` (${report.failed.length} failed)` : ""
      }${stopped ? ` (${stopped} stopped by the interruption)` : ""}`,
    );
  };

  const makeJob = (plan: CellPlan): CellJob => {
    const tmp = opts.store.tempDir();
    const { key } = planned.keys.get(plan.id)!;
    started.set(plan.id, { t0: performance.now(), startedOn: nowIso(), tmp });
    const logPath = join(tmp, "log.txt");
    writeFileSync(logPath, "");
    return {
      plan,
      key,
      outDir: join(tmp, "out"),
      log: (m) => writeFileSync(logPath, m.endsWith("\n") ? m : `${m}\n`, { flag: "a" }),
      setSummary: (s) => summaries.set(plan.id, s),
      recordProvenance: (f) => facts.set(plan.id, { ...facts.get(plan.id), ...f }),
      signal,
    };
  };

  const complete = (job: CellJob): Promise<void> => {
    const s = started.get(job.plan.id)!;
    const { key, doc } = planned.keys.get(job.plan.id)!;
    const logText = readFileSync(join(s.tmp, "log.txt"));
    const res = opts.store.commit(s.tmp, {
      stage: stage.name,
      id: job.plan.id,
      key,
      keyDocument: doc,
      summary: summaries.get(job.plan.id) ?? null,
      provenance: {
        key,
        keyDocument: doc,
        inputs: job.plan.inputs,
        params: job.plan.params ?? null,
        toolchain: tc,
        builder,
        timings: { startedOn: s.startedOn, finishedOn: nowIso(), wallMs: performance.now() - s.t0 },
        logSha256: digestJson(new TextDecoder().decode(logText)),
        ...(facts.has(job.plan.id) ? { stage: facts.get(job.plan.id) } : {}),
      },
    });
    finished.set(job.plan.id, res);
    report.ran++;
    done++;
    progress(done === total);
    return Promise.resolve();
  };

  const fail = (plan: CellPlan, e: unknown) => {
    const msg = e instanceof Error ? e.message : String(e);
    // Once interrupted, a cell's error is the interruption's (its harness was killed, or it never
    // started): blaming the cell would report hundreds of failures for one Ctrl-C.
    if (signal.aborted) report.interrupted.push(plan.id);
    else report.failed.push({ id: plan.id, error: msg.split("\n")[0] });
    done++;
    progress(done === total);
  };

  const stopHeartbeat = startHeartbeat(opts.heartbeatMs ?? 10_000, () => {
    const running = [...started].filter(([id]) => !finished.has(id) && !isSettled(id));
    if (!running.length || performance.now() - lastPrint < (opts.heartbeatMs ?? 10_000)) return;
    lastPrint = performance.now();
    const [id, s] = running.reduce((a, b) => (b[1].t0 < a[1].t0 ? b : a));
    log(
      `[${stage.name}] still running: ${done}/${total} cells done; ${running.length} running, ` +
        `the longest ${id} (${((lastPrint - s.t0) / 1000).toFixed(0)} s)`,
    );
  });
  const isSettled = (id: string) =>
    report.interrupted.includes(id) || report.failed.some((f) => f.id === id);
  try {
    if (stage.runBatch) {
      const byResource = new Map<Resource, CellJob[]>();
      for (const p of todo) {
        const r = p.resource ?? stage.resource;
        byResource.set(r, [...(byResource.get(r) ?? []), makeJob(p)]);
      }
      await Promise.all([...byResource.values()].map(async (jobs) => {
        try {
          await stage.runBatch!(jobs, ctx, complete);
        } catch (e) {
          for (const j of jobs) if (!finished.has(j.plan.id)) fail(j.plan, e);
          return;
        }
        for (const j of jobs) {
          if (!finished.has(j.plan.id)) {
            fail(j.plan, new Error("the batch ended without completing this cell"));
          }
        }
      }));
    } else if (stage.run) {
      const limits = {
        cpu: navigator.hardwareConcurrency || 2,
        gpu: Math.max(1, tc.gpus.length),
        ...opts.limits,
      };
      const pools = { cpu: new Pool(limits.cpu), gpu: new Pool(limits.gpu) };
      await Promise.all(todo.map((p) =>
        pools[p.resource ?? stage.resource].run(async () => {
          if (signal.aborted) return fail(p, new Error("interrupted"));
          const job = makeJob(p);
          try {
            await stage.run!(job, ctx);
          } catch (e) {
            return fail(p, e);
          }
          await complete(job);
        })
      ));
    } else {
      throw new PipelineError(`stage ${stage.name} defines neither run nor runBatch`);
    }
  } finally {
    stopHeartbeat();
  }
  return signal.aborted;
}
