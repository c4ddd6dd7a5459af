/**
 * The command line: reproduce, status, why, gc, validate, doctor.
 * Exit codes: 0 success; 1 some cells failed; 2 bad input or usage; 3 the store is locked.
 */
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import {
  type AnyStage,
  DEFAULT_STORE,
  discoverToolchain,
  dryPlan,
  formatDiagnostic,
  gpuArch,
  importStore,
  PipelineError,
  REPO_ROOT,
  runPipeline,
  selectStages,
  type StageReport,
  Store,
  StoreLockedError,
  type Toolchain,
} from "./engine/mod.ts";
import { validatePath } from "./trace/mod.ts";
import { loadStages, STAGE_NAMES } from "../stages/mod.ts";

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
  status                what would run now, stage by stage
  why [STAGE]           which field of which cell key changed since the last run
  gc [--max-size SIZE]  delete least-recently-used cells until the store fits (default 5G)
     [--all]              may also delete cells of the latest runs
  import STORE|TAR      merge another store's cells and runs into this one (e.g. a GPU machine's
                          results packed by tools/gpu-run.sh); runs are united by cell id
  validate PATH         check a definition/solution/JSONL/safetensors file or a whole TraceSet
  doctor                toolchains and GPUs found here, and what the pipeline can run here

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
    if (!STAGE_NAMES.includes(stage)) throw new UsageError(`--set: unknown stage "${stage}"`);
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

function printReports(reports: StageReport[], ms: number) {
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
  const ran = reports.reduce((a, r) => a + r.ran, 0);
  const nr = reports.reduce((a, r) => a + r.notRunnable.length, 0);
  const stopped = reports.reduce((a, r) => a + r.interrupted.length, 0);
  console.log(
    ran === 0
      ? `\nnothing to do: every cell is up to date (${(ms / 1000).toFixed(2)}s)`
      : `\nran ${ran} cells in ${(ms / 1000).toFixed(1)}s`,
  );
  if (stopped) {
    console.log(
      `interrupted: ${stopped} cells were left unfinished (not failures, nothing recorded); ` +
        "the next run picks them up",
    );
  }
  if (nr) {
    console.log(
      `${nr} cells cannot run on this machine (see "not runnable here" above; \`doctor\` says why)`,
    );
  }
}

async function reproduce(args: string[], storeDir: string): Promise<number> {
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
  const { run } = selectStages(stub, { from: values.from, to: values.to, only });
  const stages = await loadStages(run);
  const store = new Store(storeDir);
  const release = await store.lock({ wait: values.wait });
  try {
    const { reports, ok } = await runPipeline({
      root: REPO_ROOT,
      store,
      stages,
      rawParams: profile,
      paramsSource: values.profile,
      from: values.from,
      to: values.to,
      only,
      force,
    });
    await afterRun(stages, store);
    printReports(reports, performance.now() - t0);
    return ok ? 0 : 1;
  } finally {
    release();
  }
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
  const store = new Store(storeDir);
  const plan = await dryPlan({
    root: REPO_ROOT,
    store,
    stages,
    rawParams: profile,
    paramsSource: values.profile,
  });
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

async function doctor(): Promise<number> {
  const tc: Toolchain = await discoverToolchain();
  const line = (k: string, v: string) => console.log(`${k.padEnd(10)} ${v}`);
  line("os", `${tc.os} ${tc.arch}`);
  line("deno", tc.deno);
  line(
    "python",
    tc.python
      ? `${tc.python.version} (${tc.python.path}); torch ${tc.python.torch ?? "absent"}; triton ${
        tc.python.triton ?? "absent"
      }`
      : "absent",
  );
  line("nvcc", tc.nvcc ? `${tc.nvcc.version} (${tc.nvcc.path})` : "absent");
  line("ptxas", tc.ptxas ? `${tc.ptxas.version}` : "absent");
  if (tc.gpus.length) {
    for (const g of tc.gpus) {
      line(
        `gpu ${g.index}`,
        `${g.name}, cc ${g.computeCapability}, driver ${g.driver}, ${g.memoryMiB} MiB`,
      );
    }
  } else line("gpu", "none");
  line(
    "nix",
    tc.nix
      ? `inside the dev shell (${tc.nix.storePaths.length} store paths)`
      : "not in a Nix shell",
  );
  console.log("\nwhat can run here:");
  const gpu = tc.gpus.length > 0 && tc.python?.cudaAvailable;
  console.log(`  definitions, collect, extract, generate, aggregate: yes (CPU only)`);
  console.log(
    `  compile: ${
      tc.nvcc
        ? `CUDA sources compile${gpu ? ` for ${gpuArch(tc)}` : " (compile check only: no GPU)"}`
        : "no nvcc: CUDA solutions not runnable here"
    }; Python/Triton solutions need no build`,
  );
  console.log(
    `  verify, time: ${
      gpu
        ? "all languages on the GPU"
        : tc.python?.torch
        ? "python solutions and references on the CPU; CUDA and Triton cells are listed as not runnable here"
        : "nothing: no Python with torch (install python3-torch, or set TRACEPIPE_PYTHON)"
    }`,
  );
  return 0;
}

/** Entry point; returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  const storeIdx = rest.indexOf("--store");
  const storeDir = storeIdx >= 0 ? resolve(rest[storeIdx + 1] ?? "") : DEFAULT_STORE;
  if (storeIdx >= 0) rest.splice(storeIdx, 2);
  try {
    switch (cmd) {
      case "reproduce":
        return await reproduce(rest, storeDir);
      case "status":
      case "why":
        return await statusOrWhy(cmd, rest, storeDir);
      case "gc": {
        const { values } = parseArgs({
          args: rest,
          options: {
            "max-size": { type: "string", default: "5G" },
            all: { type: "boolean", default: false },
          },
        });
        const store = new Store(storeDir);
        const release = await store.lock();
        try {
          const r = store.gc(parseSize(values["max-size"]!), values.all);
          console.log(
            `gc: removed ${r.removed} cells (${human(r.freedBytes)}); the store now holds ${
              human(r.keptBytes)
            }`,
          );
        } finally {
          release();
        }
        return 0;
      }
      case "import": {
        if (!rest[0]) throw new UsageError("import: give a store folder or a .tar.xz of one");
        let src = resolve(rest[0]);
        if (!existsSync(src)) throw new UsageError(`import: ${src} does not exist`);
        if (src.endsWith(".tar.xz") || src.endsWith(".tar")) {
          const dir = Deno.makeTempDirSync({ prefix: "tp-import-" });
          const out = await new Deno.Command("tar", {
            args: ["xf", src, "-C", dir],
            stderr: "piped",
          }).output();
          if (!out.success) {
            throw new UsageError(
              `import: cannot unpack ${src}: ${new TextDecoder().decode(out.stderr)}`,
            );
          }
          src = dir;
        }
        const store = new Store(storeDir);
        const release = await store.lock();
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
      e instanceof UsageError || e instanceof PipelineError ||
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
