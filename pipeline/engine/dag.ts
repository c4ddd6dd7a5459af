/**
 * Plan and execute: for each stage in order, plan its cells, key them, reuse what the store has,
 * run the rest with per-resource parallelism limits, and record the run. The dry planning behind
 * `status` and `why` is in status.ts.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { codeDigest } from "./codegraph.ts";
import { jsonPath } from "./diagnostics.ts";
import { digestJson } from "./hash.ts";
import { type BuilderInfo, builderInfo } from "./provenance.ts";
import type {
  CellJob,
  CellPlan,
  CellResult,
  PipelineStage,
  PlanContext,
  Resource,
  Stage,
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
  from?: string;
  to?: string;
  only?: string[];
  /** true: re-run every selected cell; a list: re-run the cells of these stages. */
  force?: boolean | string[];
  limits?: Partial<Record<Resource, number>>;
  toolchain?: Toolchain;
  log?: (line: string) => void;
  salt?: string;
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

/** A user-facing configuration problem (bad params, unknown stage, missing upstream run). */
export class PipelineError extends Error {}

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

/** Parses a stage's params, turning zod issues into one line naming the profile field. */
export function parseParams<P>(stage: Stage<P>, raw: unknown, source = "profile"): P {
  const r = stage.params.safeParse(raw ?? {});
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) =>
    `${source}: ${jsonPath([stage.name, ...i.path])}: ${i.message}`
  );
  throw new PipelineError(lines.join("\n"));
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

function stageEnv(stage: AnyStage): Record<string, string> {
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
  const params = parseParams(stage, opts.rawParams[stage.name], opts.paramsSource);
  const env = stageEnv(stage);
  const ctx: PlanContext<unknown> = {
    params,
    root: opts.root,
    upstream,
    toolchain: tc,
    env,
    log: (m) => (opts.log ?? console.log)(`[${stage.name}] ${m}`),
  };
  const plans = await stage.plan(ctx);
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

/** Lets each stage the run includes start its background preparation (Stage.prewarm). */
function prewarmStages(opts: PipelineOptions, run: Set<string>): void {
  const gpus = opts.toolchain ? Promise.resolve(opts.toolchain.gpus) : probeGpusOnce();
  for (const stage of opts.stages) {
    if (!stage.prewarm || !run.has(stage.name)) continue;
    let params: unknown;
    try {
      params = parseParams(stage, opts.rawParams[stage.name], opts.paramsSource);
    } catch {
      continue; // planning the stage reports its bad params
    }
    stage.prewarm(params, gpus);
  }
}

/** Runs the pipeline. Never throws for a failing cell: failures are reported per cell. */
export async function runPipeline(
  opts: PipelineOptions,
): Promise<{ reports: StageReport[]; ok: boolean }> {
  const log = opts.log ?? console.log;
  const { run, last } = selectStages(opts.stages, opts);
  prewarmStages(opts, run);
  const tc = opts.toolchain ?? await discoverToolchain();
  const builder = await builderInfo(opts.root);
  const results: Record<string, CellResult[]> = {};
  const reports: StageReport[] = [];
  // A stage that does not run is read from the store only if a running stage consumes it.
  const needed = new Set(opts.stages.filter((s) => run.has(s.name)).flatMap((s) => s.upstream));
  let ok = true;
  for (const [i, stage] of opts.stages.entries()) {
    if (i > last) break;
    const t0 = performance.now();
    if (!run.has(stage.name) && !needed.has(stage.name)) continue;
    const upstream: Record<string, CellResult[]> = {};
    for (const u of run.has(stage.name) ? stage.upstream : []) {
      if (!results[u]) {
        throw new PipelineError(`stage ${stage.name} needs "${u}", which is not defined before it`);
      }
      upstream[u] = results[u];
    }
    if (!run.has(stage.name)) {
      const prev = opts.store.lastResults(stage.name);
      if (prev === null) {
        throw new PipelineError(
          `stage ${stage.name} has no recorded run in ${opts.store.root}; run it first (without --from/--only)`,
        );
      }
      results[stage.name] = prev;
      reports.push({
        stage: stage.name,
        mode: "reused",
        planned: prev.length,
        hits: prev.length,
        ran: 0,
        failed: [],
        interrupted: [],
        notRunnable: [],
        ms: performance.now() - t0,
      });
      continue;
    }
    const planned = await planStage(stage, upstream, opts, tc, builder);
    const forced = opts.force === true ||
      (Array.isArray(opts.force) && opts.force.includes(stage.name));
    const report: StageReport = {
      stage: stage.name,
      mode: "ran",
      planned: planned.plans.length,
      hits: 0,
      ran: 0,
      failed: [],
      interrupted: [],
      notRunnable: [],
      ms: 0,
    };
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
      await executeCells(planned, todo, opts, tc, builder, finished, report, log);
    const ordered = planned.plans.map((p) => finished.get(p.id)).filter((c): c is CellResult =>
      !!c
    );
    results[stage.name] = ordered.map(({ id, key, digest, dir, summary }) => ({
      id,
      key,
      digest,
      dir,
      summary,
    }));
    opts.store.writeRun({
      stage: stage.name,
      finishedAt: nowIso(),
      cells: ordered.map((c) => ({ id: c.id, key: c.key })),
      notRunnable: report.notRunnable,
      failed: report.failed,
      keyDocuments: Object.fromEntries([...planned.keys].map(([id, k]) => [id, k.doc])),
    });
    report.ms = performance.now() - t0;
    if (report.failed.length) ok = false;
    reports.push(report);
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
    if (interrupted) {
      log(
        `[${stage.name}] interrupted: ${report.ran} finished cells are kept; ` +
          `${report.interrupted.length} unfinished cells were not recorded and run next time; ` +
          "later stages were not run",
      );
      return { reports, ok: false };
    }
  }
  return { reports, ok };
}

async function executeCells(
  planned: PlannedStage,
  todo: CellPlan[],
  opts: PipelineOptions,
  tc: Toolchain,
  builder: BuilderInfo,
  finished: Map<string, CellResult>,
  report: StageReport,
  log: (l: string) => void,
): Promise<boolean> {
  const { stage, ctx } = planned;
  const abort = new AbortController();
  const onSignal = () => abort.abort();
  // Ctrl-C or a `timeout`/scheduler SIGTERM stops the cells cleanly: harness process groups are
  // killed, finished cells stay in the store, unfinished ones leave nothing behind.
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  for (const s of signals) {
    try {
      Deno.addSignalListener(s, onSignal);
    } catch { /* signals unsupported here */ }
  }
  const started = new Map<string, { t0: number; startedOn: string; tmp: string }>();
  const summaries = new Map<string, unknown>();
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
      signal: abort.signal,
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
    if (abort.signal.aborted) report.interrupted.push(plan.id);
    else report.failed.push({ id: plan.id, error: msg.split("\n")[0] });
    done++;
    progress(done === total);
  };

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
          if (abort.signal.aborted) return fail(p, new Error("interrupted"));
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
    for (const s of signals) {
      try {
        Deno.removeSignalListener(s, onSignal);
      } catch { /* unsupported */ }
    }
  }
  return abort.signal.aborted;
}
