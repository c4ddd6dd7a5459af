/**
 * The command line: reproduce, status, why, gc, validate, doctor (doctor.ts).
 * Exit codes: 0 success; 1 some cells failed; 2 bad input or usage; 3 the store is locked;
 * 130/143 stopped by SIGINT/SIGTERM (finished cells kept).
 */
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  type AnyStage,
  DEFAULT_STORE,
  describeHolder,
  discoverToolchain,
  dryPlan,
  exitCodeFor,
  formatDiagnostic,
  importStore,
  type Interruption,
  type LockHolder,
  PipelineError,
  REPO_ROOT,
  runPipeline,
  selectStages,
  type StageReport,
  Store,
  StoreLockedError,
  superviseRun,
  type Toolchain,
  unknownParamKey,
} from "./engine/mod.ts";
import {
  GPUS_ENV,
  GpuSelectionError,
  hostGpus,
  LOCK_CLOCKS_ENV,
  parseGpuSelection,
} from "./harness/mod.ts";
import { doctor } from "./doctor.ts";
import { isPathError } from "./lib/mod.ts";
import { validatePath } from "./trace/mod.ts";
import { REFRESH_USAGE, refreshCommand } from "./refresh/mod.ts";
import { loadStages, STAGE_NAMES } from "../stages/mod.ts";
import { shardedRun, SLURM_USAGE, slurmCommand } from "./scale/mod.ts";
import { CLAIMS_USAGE, claimsCommand, reportCommand } from "./claims/mod.ts";

const USAGE = `tracepipe: FlashInfer-Bench, reproduced as a content-addressed pipeline

usage: deno task tp <command> [options]      (deno task reproduce = deno task tp reproduce)

commands:
  reproduce             run the stages that are out of date (${STAGE_NAMES.join(" → ")})
    --from STAGE          start here; earlier stages are taken from their last recorded run
    --to STAGE            stop after this stage
    --only A,B            run only these stages
    --force A,B           re-run these stages' cells even when the store has them
    --force-all           re-run every selected cell
    --profile FILE        params per stage (default profiles/default.json)
    --set STAGE.KEY=VAL   override one param (VAL parsed as JSON when it parses)
    --corpus DIR          import a FlashInfer TraceSet's solutions (repeatable)
    --wait                wait for another run holding the store instead of refusing
    --lock-clocks         lock the GPU clocks at their maximum while timing (nvidia-smi -lgc/-lmc,
                            where permitted; each time cell records whether the lock held)
    --gpus 0,1            judge on these GPUs only (default: all; verify runs its lanes on each,
                            time one per GPU; a GPU another run holds is waited for)
    --shard I/N           run shard I (0 … N-1) of the judging stages' cells, stopping after them;
                            \`tp import\` of the N stores gives one run's cells (see slurm)
  status                what would run now, stage by stage
  why [STAGE]           which field of which cell key changed since the last run
  gc [--max-size SIZE]  delete least-recently-used cells until the store fits (default 5G)
     [--all] [--wait]     --all may also delete cells of the latest runs
  import STORE|TAR      merge another store's cells and runs into this one (e.g. a GPU machine's
     [--wait]             results packed by tools/gpu-run.sh); runs are united by cell id
  validate PATH         check a definition/solution/JSONL/safetensors file or a whole TraceSet
  doctor                toolchains and GPUs found here, and what the pipeline can run here
${REFRESH_USAGE}
${SLURM_USAGE}
${CLAIMS_USAGE}

common options: --store DIR (default .tracepipe/store)`;

/** Thrown for bad command-line input (exit code 2). */
class UsageError extends Error {}

function parseSize(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(s.trim());
  if (!m) throw new UsageError(`--max-size: cannot read "${s}" (use e.g. 500M or 5G)`);
  const mult = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2].toLowerCase()]!;
  return Math.round(Number(m[1]) * mult);
}

const human = (n: number) =>
  n >= 2 ** 30
    ? `${(n / 2 ** 30).toFixed(2)} GiB`
    : n >= 2 ** 20
    ? `${(n / 2 ** 20).toFixed(1)} MiB`
    : `${(n / 1024).toFixed(1)} KiB`;

/** Reads the profile and applies --set and --corpus overrides. */
export function loadProfile(
  profilePath: string,
  sets: string[],
  corpora: string[],
): Record<string, Record<string, unknown>> {
  let profile: Record<string, Record<string, unknown>> = {};
  if (existsSync(profilePath)) {
    try {
      profile = JSON.parse(readFileSync(profilePath, "utf8"));
    } catch (e) {
      throw new UsageError(`${profilePath}: malformed JSON: ${(e as Error).message}`);
    }
    if (typeof profile !== "object" || profile === null || Array.isArray(profile)) {
      throw new UsageError(`${profilePath}: $: expected an object of stage name → params`);
    }
    for (const k of Object.keys(profile)) {
      if (!k.startsWith("_") && !STAGE_NAMES.includes(k)) {
        throw new UsageError(
          `${profilePath}: $.${k}: unknown stage (stages: ${STAGE_NAMES.join(", ")})`,
        );
      }
    }
  } else if (sets.length === 0) {
    throw new UsageError(`--profile: ${profilePath} does not exist`);
  }
  for (const s of sets) {
    const m = /^([a-z_]+)\.([A-Za-z0-9_.]+)=(.*)$/s.exec(s);
    if (!m) throw new UsageError(`--set: expected STAGE.KEY=VALUE, got "${s}"`);
    const [, stage, key, raw] = m;
    if (!STAGE_NAMES.includes(stage)) {
      throw new UsageError(
        `--set ${stage}.${key}: unknown stage "${stage}" (stages: ${STAGE_NAMES.join(", ")})`,
      );
    }
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch { /* a plain string */ }
    const target = (profile[stage] ??= {});
    const path = key.split(".");
    let obj = target as Record<string, unknown>;
    for (const p of path.slice(0, -1)) obj = (obj[p] ??= {}) as Record<string, unknown>;
    obj[path[path.length - 1]] = value;
  }
  if (corpora.length) {
    const gen = (profile.generate ??= {});
    const list = Array.isArray(gen.corpus) ? gen.corpus as string[] : [];
    gen.corpus = [...list, ...corpora.map((c) => isAbsolute(c) ? c : resolve(Deno.cwd(), c))];
  }
  return profile;
}

/** The `STAGE.KEY` of each `--set STAGE.KEY=VALUE` (what a bad value is blamed on). */
export function setKeys(sets: string[]): string[] {
  return sets.map((s) => s.slice(0, s.indexOf("=")));
}

/**
 * Rejects a `--set` whose key is not a param of its stage (a typo would otherwise be dropped by
 * the schema without a word), naming the keys that stage knows there.
 */
export function checkSetKeys(sets: string[], stages: AnyStage[]): void {
  for (const full of setKeys(sets)) {
    const [stageName, ...path] = full.split(".");
    const stage = stages.find((s) => s.name === stageName);
    if (!stage || stage.description === "(not loaded)") continue;
    const bad = unknownParamKey(stage.params, path);
    if (!bad) continue;
    const where = [stageName, ...bad.at].join(".");
    throw new UsageError(
      `--set ${full}: ${where} has no param "${bad.key}"` +
        (bad.known.length ? ` (known: ${bad.known.join(", ")})` : ""),
    );
  }
}

/** A path as the user should read it: relative to the working directory when inside it. */
const shown = (p: string) => {
  const r = relative(Deno.cwd(), resolve(p));
  return r && !r.startsWith("..") && !isAbsolute(r) ? r : p;
};

/**
 * The closing lines of a run: "nothing to do" only when no cell ran, failed or was interrupted;
 * otherwise what ran, failed and was left unfinished.
 */
export function summarizeRun(reports: StageReport[], ms: number, stoppedAt?: string): string[] {
  const sum = (f: (r: StageReport) => number) => reports.reduce((a, r) => a + f(r), 0);
  const ran = sum((r) => r.ran);
  const failed = sum((r) => r.failed.length);
  const stopped = sum((r) => r.interrupted.length);
  const nr = sum((r) => r.notRunnable.length);
  const secs = (ms / 1000).toFixed(ran ? 1 : 2);
  const lines: string[] = [];
  if (ran === 0 && failed === 0 && stopped === 0 && !stoppedAt) {
    lines.push(`nothing to do: every cell is up to date (${secs}s)`);
  } else {
    const parts = [`ran ${ran} cells`, ...(failed ? [`${failed} failed`] : [])];
    lines.push(
      `${parts.join(", ")} in ${secs}s${stoppedAt ? ` (interrupted in ${stoppedAt})` : ""}`,
    );
  }
  if (stopped) {
    lines.push(
      `interrupted: ${stopped} cells were left unfinished (not failures, nothing recorded); ` +
        "the next run picks them up",
    );
  } else if (stoppedAt) {
    lines.push(`interrupted before ${stoppedAt} ran; the next run picks it up`);
  }
  if (nr) {
    lines.push(
      `${nr} cells cannot run on this machine (see "not runnable here" above; \`doctor\` says why)`,
    );
  }
  return lines;
}

/** What a run and a dry plan both read: the store, the stages, the profile and its --set keys. */
function planInputs(
  store: Store,
  stages: AnyStage[],
  profile: Record<string, unknown>,
  values: { profile?: string; set?: string[] },
) {
  return {
    root: REPO_ROOT,
    store,
    stages,
    rawParams: profile,
    paramsSource: shown(values.profile!),
    paramOverrides: setKeys(values.set!),
  };
}

/** Takes the store lock; with `wait`, says whose run it waits for, at once and every 10 s. */
function lockStore(
  store: Store,
  command: string,
  wait: boolean,
  guard?: Interruption,
): Promise<() => void> {
  let first = true;
  const onWait = (h: LockHolder, waitedMs: number) => {
    console.error(
      first
        ? `waiting for the store ${store.root}, held by ${describeHolder(h)} ` +
          "(progress every 10 s; Ctrl-C gives up)"
        : `still waiting after ${Math.round(waitedMs / 1000)} s for ${describeHolder(h)}`,
    );
    first = false;
  };
  return store.lock({ wait, command, onWait, signal: guard?.signal });
}

function printReports(reports: StageReport[], ms: number, stoppedAt?: string) {
  console.log("");
  console.log("stage         cells  cached  ran  failed  not-runnable  time");
  for (const r of reports) {
    const mode = r.mode === "reused" ? " (last run)" : "";
    console.log(
      `${r.stage.padEnd(13)} ${String(r.planned).padStart(5)}  ${String(r.hits).padStart(6)}  ` +
        `${String(r.ran).padStart(3)}  ${String(r.failed.length).padStart(6)}  ` +
        `${String(r.notRunnable.length).padStart(12)}  ${(r.ms / 1000).toFixed(1)}s${mode}`,
    );
  }
  console.log("");
  for (const line of summarizeRun(reports, ms, stoppedAt)) console.log(line);
}

async function reproduce(args: string[], storeDir: string, command: string): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      from: { type: "string" },
      to: { type: "string" },
      only: { type: "string" },
      force: { type: "string" },
      "force-all": { type: "boolean" },
      profile: { type: "string", default: join(REPO_ROOT, "profiles", "default.json") },
      set: { type: "string", multiple: true, default: [] },
      corpus: { type: "string", multiple: true, default: [] },
      wait: { type: "boolean", default: false },
      "lock-clocks": { type: "boolean", default: false },
      gpus: { type: "string" },
      shard: { type: "string" },
      store: { type: "string" },
    },
    strict: true,
  });
  const only = values.only?.split(",").filter(Boolean);
  const force = values["force-all"]
    ? true
    : values.force !== undefined
    ? values.force.split(",").filter(Boolean)
    : false;
  const profile = loadProfile(values.profile!, values.set!, values.corpus!);
  const t0 = performance.now();
  const stub = await loadStages(new Set());
  const sharded = shardedRun(values.shard, STAGE_NAMES, { to: values.to, only });
  const { run } = selectStages(stub, { from: values.from, to: sharded.to, only });
  const setStages = setKeys(values.set!).map((k) => k.split(".")[0]);
  const stages = await loadStages(new Set([...run, ...setStages]));
  checkSetKeys(values.set!, stages);
  // Read by the time stage (it enters time's keys only when set): lock the clocks while timing.
  if (values["lock-clocks"]) Deno.env.set(LOCK_CLOCKS_ENV, "1");
  const toolchain = values.gpus === undefined ? undefined : await chooseGpus(values.gpus);
  // From here on a SIGINT or SIGTERM stops the run cleanly, and nothing the run starts outlives it.
  const guard = superviseRun((l) => console.error(l));
  try {
    const store = new Store(storeDir);
    const release = await lockStore(store, command, values.wait!, guard);
    try {
      const { reports, ok, stoppedAt } = await runPipeline({
        ...planInputs(store, stages, profile, values),
        toolchain,
        from: values.from,
        to: sharded.to,
        only,
        force,
        signal: guard.signal,
        cellFilter: sharded.cellFilter,
      });
      await afterRun(stages, store);
      printReports(reports, performance.now() - t0, stoppedAt);
      const sig = guard.stoppedBy();
      return sig ? exitCodeFor(sig) : ok ? 0 : 1;
    } finally {
      release();
    }
  } catch (e) {
    const sig = guard.stoppedBy();
    if (sig && e instanceof StoreLockedError) {
      console.error(`error: ${e.message}`);
      return exitCodeFor(sig);
    }
    throw e;
  } finally {
    guard.dispose();
  }
}

/**
 * `--gpus 0,1`: checked against this host's GPUs, then handed to the judging stages' lanes through
 * the environment, which no cell key reads (which GPU judged a cell is provenance). Returns the
 * toolchain it probed, for the run to reuse.
 */
async function chooseGpus(spec: string): Promise<Toolchain> {
  const tc = await discoverToolchain();
  Deno.env.set(GPUS_ENV, parseGpuSelection(spec, hostGpus(tc.gpus)).join(","));
  return tc;
}

/** Lets every stage that ran publish what its latest cells hold (aggregate: reports/). */
async function afterRun(stages: AnyStage[], store: Store): Promise<void> {
  for (const stage of stages) {
    if (!stage.publish) continue;
    const cells = store.lastResults(stage.name);
    if (cells?.length) await stage.publish({ cells, root: REPO_ROOT, log: console.log });
  }
}

async function statusOrWhy(
  cmd: "status" | "why",
  args: string[],
  storeDir: string,
): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      profile: { type: "string", default: join(REPO_ROOT, "profiles", "default.json") },
      set: { type: "string", multiple: true, default: [] },
      corpus: { type: "string", multiple: true, default: [] },
    },
    allowPositionals: true,
  });
  const target = positionals[0];
  if (target && !STAGE_NAMES.includes(target)) {
    throw new UsageError(`why: unknown stage "${target}"`);
  }
  const profile = loadProfile(values.profile!, values.set!, values.corpus!);
  const stages = await loadStages("all");
  checkSetKeys(values.set!, stages);
  const store = new Store(storeDir);
  const plan = await dryPlan(planInputs(store, stages, profile, values));
  for (const s of plan) {
    if (cmd === "why" && target && s.stage !== target) continue;
    const last = s.lastRun ? `last run ${s.lastRun}` : "never run";
    if (s.state !== "planned") {
      console.log(`${s.stage}: ${s.state}: ${s.note} (${last})`);
      continue;
    }
    const changed = s.cells.filter((c) => c.state === "changed" || c.state === "new");
    const nr = s.cells.filter((c) => c.state === "not-runnable").length;
    console.log(
      `${s.stage}: ${s.cells.length} cells, ${s.missing} to run${
        nr ? `, ${nr} not runnable here` : ""
      } (${last})`,
    );
    if (cmd === "why") {
      for (const c of changed.slice(0, 20)) {
        if (c.state === "new") console.log(`  ${c.id}: new cell (not in the last run)`);
        else if (c.changes.length === 0) {
          console.log(`  ${c.id}: same key, but its entry is missing from the store`);
        } else for (const ch of c.changes) console.log(`  ${c.id}: ${ch}`);
      }
      if (changed.length > 20) console.log(`  … ${changed.length - 20} more cells changed`);
      if (!changed.length && s.missing === 0) console.log("  nothing changed since the last run");
    }
  }
  return 0;
}

async function gc(args: string[], storeDir: string, command: string): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      "max-size": { type: "string", default: "5G" },
      all: { type: "boolean", default: false },
      wait: { type: "boolean", default: false },
    },
  });
  const max = parseSize(values["max-size"]!);
  const store = new Store(storeDir);
  const release = await lockStore(store, command, values.wait!);
  try {
    const r = store.gc(max, values.all);
    console.log(
      `gc: removed ${r.removed} cells (${human(r.freedBytes)}); the store now holds ${
        human(r.keptBytes)
      }`,
    );
    if (r.overBytes > 0) {
      console.log(
        `gc: the target ${values["max-size"]} was not reached: the store is ${
          human(r.overBytes)
        } over it, because the ${r.latest.cells} cells of the latest runs ` +
          `(${human(r.latest.bytes)}) are kept; \`gc --all\` may delete them too`,
      );
    }
  } finally {
    release();
  }
  return 0;
}

async function importCmd(args: string[], storeDir: string, command: string): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { wait: { type: "boolean", default: false } },
    allowPositionals: true,
  });
  if (!positionals[0]) throw new UsageError("import: give a store folder or a .tar.xz of one");
  let src = resolve(positionals[0]);
  if (!existsSync(src)) throw new UsageError(`import: ${src} does not exist`);
  if (src.endsWith(".tar.xz") || src.endsWith(".tar")) {
    const dir = Deno.makeTempDirSync({ prefix: "tp-import-" });
    const out = await new Deno.Command("tar", {
      args: ["xf", src, "-C", dir],
      stderr: "piped",
    }).output();
    if (!out.success) {
      Deno.removeSync(dir, { recursive: true });
      // tar's first line says why (the others repeat that it gave up); one line, as for all bad input
      const why = new TextDecoder().decode(out.stderr).trim().split("\n")[0].replace(
        /^\S*tar: /,
        "",
      );
      throw new UsageError(`import: cannot unpack ${src}: ${why}`);
    }
    src = dir;
  }
  const store = new Store(storeDir);
  const release = await lockStore(store, command, values.wait!);
  try {
    const r = importStore(new Store(src), store);
    console.log(
      `imported ${r.cells} cells; merged the runs of ${r.stages.join(", ") || "no stage"}`,
    );
  } finally {
    release();
  }
  return 0;
}

/** Entry point; returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const command = `tp ${argv.join(" ")}`;
  const storeIdx = rest.indexOf("--store");
  const storeDir = storeIdx >= 0 ? resolve(rest[storeIdx + 1] ?? "") : DEFAULT_STORE;
  if (storeIdx >= 0) rest.splice(storeIdx, 2);
  try {
    switch (cmd) {
      case "reproduce":
        return await reproduce(rest, storeDir, command);
      case "status":
      case "why":
        return await statusOrWhy(cmd, rest, storeDir);
      case "gc":
        return await gc(rest, storeDir, command);
      case "import":
        return await importCmd(rest, storeDir, command);
      case "slurm":
        return await slurmCommand(rest, storeDir, STAGE_NAMES, command);
      case "validate": {
        if (!rest[0]) throw new UsageError("validate: give a file or a TraceSet folder");
        const { diagnostics, summary } = await validatePath(resolve(rest[0]));
        for (const d of diagnostics) console.log(formatDiagnostic(d));
        const errors = diagnostics.filter((d) => d.level === "error").length;
        console.log(
          `${summary}${summary ? "\n" : ""}${errors} errors, ${
            diagnostics.length - errors
          } warnings`,
        );
        return errors ? 2 : 0;
      }
      case "doctor":
        return await doctor();
      case "refresh":
        return await refreshCommand(rest, storeDir, command);
      case "claims":
        return await claimsCommand(rest);
      case "report":
        return await reportCommand(rest);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        console.log(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${cmd}"\n\n${USAGE}`);
    }
  } catch (e) {
    if (e instanceof StoreLockedError) {
      console.error(`error: ${e.message}`);
      return 3;
    }
    if (
      e instanceof UsageError || e instanceof PipelineError || e instanceof GpuSelectionError ||
      isPathError(e) ||
      (e as Error).name === "TypeError" &&
        (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")
    ) {
      console.error(`error: ${(e as Error).message}`);
      return 2;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
