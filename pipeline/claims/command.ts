/**
 * `tp claims`: every claim of claims.json decided on a run (PASS, FAIL or NOT RUN with why), ours
 * beside the paper's; exit 0 unless a claim that ran FAILed. `tp report --ship | --check | --out`:
 * the committed report (reports/) rebuilt from the shipped runs alone, byte for byte.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { PipelineError, REPO_ROOT } from "../engine/mod.ts";
import { isPathError } from "../lib/mod.ts";
import type { AggregateParams, ShippedRun } from "../../stages/aggregate/mod.ts";

/**
 * The aggregate stage, loaded on a command's first use rather than with the CLI: its DuckDB native
 * binding is not on a GPU machine that carries only what judging needs (docs/GPU.md), and the CLI
 * imports this module for every command.
 */
const aggregateStage = () => import("../../stages/aggregate/mod.ts");

/** Usage lines of the two commands (the CLI's help). */
export const CLAIMS_USAGE =
  `  claims                each claim of claims.json on a run: PASS, FAIL or NOT RUN (and why), ours
    [--results DIR]       beside the paper's; runs: results/ (the shipped runs) and every --run DIR;
    [--run DIR]…          decided on --on ID, else the newest GPU run; exit 0 unless a claim FAILed
    [--on ID] [--claims FILE]
  report --ship         rebuild the committed report (reports/) from the shipped runs alone
         --check          rebuild it elsewhere and compare with reports/ byte for byte (exit 1 if not)
         --out DIR        rebuild it into DIR`;

/** Bad input to these commands (exit 2). */
class InputError extends Error {}

/** The aggregate params of the default profile (the committed report is built with them). */
async function profileParams(root: string): Promise<AggregateParams> {
  const { AggregateParams } = await aggregateStage();
  const p = join(root, "profiles", "default.json");
  let section: unknown = {};
  if (existsSync(p)) section = JSON.parse(readFileSync(p, "utf8")).aggregate ?? {};
  const r = AggregateParams.safeParse(section);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new InputError(`profiles/default.json: $.aggregate.${i.path.join(".")}: ${i.message}`);
  }
  return r.data;
}

/** Runs `f`, turning bad input into one line on stderr and exit code 2. */
async function guarded(f: () => Promise<number>): Promise<number> {
  try {
    return await f();
  } catch (e) {
    const { ClaimsError, RunFolderError } = await aggregateStage();
    if (
      e instanceof InputError || e instanceof ClaimsError || e instanceof RunFolderError ||
      e instanceof PipelineError || isPathError(e) ||
      (e as { code?: string }).code?.startsWith?.("ERR_PARSE_ARGS")
    ) {
      console.error(`error: ${(e as Error).message}`);
      return 2;
    }
    throw e;
  }
}

/** `tp claims`. */
export function claimsCommand(args: string[], root = REPO_ROOT): Promise<number> {
  return guarded(async () => {
    const { claimLines, claimsOnRuns, listShippedRuns, readRunFolder, RUN_STAGES } =
      await aggregateStage();
    const { values } = parseArgs({
      args,
      options: {
        results: { type: "string", default: join(root, "results") },
        run: { type: "string", multiple: true, default: [] },
        on: { type: "string" },
        claims: { type: "string", default: join(root, "claims.json") },
      },
    });
    const runs: ShippedRun[] = listShippedRuns(resolve(values.results!), RUN_STAGES);
    for (const d of values.run!) {
      if (!existsSync(join(d, "run.json"))) {
        throw new InputError(`--run ${d}: no run.json there (a run folder: run.json and cells/)`);
      }
      runs.push(readRunFolder(resolve(d)));
    }
    if (!runs.length) throw new InputError(`no run: ${values.results} is empty and no --run`);
    const on = values.on ?? (values.run!.length ? runs[runs.length - 1].id : undefined);
    const { on: run, results } = await claimsOnRuns({
      root,
      runs,
      on,
      claimsPath: resolve(values.claims!),
      params: await profileParams(root),
    });
    console.log(
      `claims on run ${run.id} (${run.gpu ?? "CPU"}; ${runs.length} run${
        runs.length === 1 ? "" : "s"
      } loaded: ${runs.map((r) => r.id).join(", ")})`,
    );
    for (const l of claimLines(results)) console.log(l);
    const n = (s: string) => results.filter((r) => r.status === s).length;
    console.log(`${n("PASS")} PASS, ${n("FAIL")} FAIL, ${n("NOT RUN")} NOT RUN`);
    const broken = results.filter((r) => r.error);
    if (broken.length) {
      for (const b of broken) console.error(`error: claims.json: ${b.id}: ${b.error}`);
      return 2;
    }
    return n("FAIL") ? 1 : 0;
  });
}

/** Every file under `dir` (relative paths), leaving out `skip` (relative folder names). */
function filesUnder(dir: string, skip: string[] = []): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      const rel = relative(dir, p);
      if (skip.includes(rel)) continue;
      if (statSync(p).isDirectory()) walk(p);
      else out.push(rel);
    }
  };
  if (existsSync(dir)) walk(dir);
  return out;
}

/**
 * The files of `built` and `reports` that differ (the git-ignored reports/latest/ and the publish
 * manifest left out): changed, missing from reports/, or in reports/ but no longer built.
 */
export function compareReport(built: string, reports: string): string[] {
  const skip = ["latest", ".aggregate-published.json"];
  const a = filesUnder(built, skip), b = new Set(filesUnder(reports, skip));
  const diffs: string[] = [];
  for (const f of a) {
    if (!b.has(f)) diffs.push(`missing from reports/: ${f}`);
    else if (!readFileSync(join(built, f)).equals(readFileSync(join(reports, f)))) {
      diffs.push(`differs: ${f}`);
    }
    b.delete(f);
  }
  for (const f of b) diffs.push(`not built (stale in reports/): ${f}`);
  return diffs;
}

/** `tp report --ship | --check | --out DIR`. */
export function reportCommand(args: string[], root = REPO_ROOT): Promise<number> {
  return guarded(async () => {
    const { values } = parseArgs({
      args,
      options: {
        ship: { type: "boolean", default: false },
        check: { type: "boolean", default: false },
        out: { type: "string" },
      },
    });
    const modes = [values.ship, values.check, values.out !== undefined].filter(Boolean).length;
    if (modes !== 1) {
      throw new InputError(
        "report: give one of --ship (rewrite reports/), --check (compare with reports/) or --out DIR",
      );
    }
    const { buildShippedReport, publishReports } = await aggregateStage();
    const params = await profileParams(root);
    const outDir = values.out ? resolve(values.out) : mkdtempSync(join(tmpdir(), "tp-report-"));
    try {
      const t0 = performance.now();
      const built = await buildShippedReport({ root, outDir, params, log: () => {} });
      const secs = ((performance.now() - t0) / 1000).toFixed(1);
      const runs = Object.keys(built.summaries).join(", ");
      if (values.out) {
        console.log(`report of ${runs} written to ${outDir} in ${secs} s`);
        return 0;
      }
      const reports = join(root, "reports");
      if (values.check) {
        const diffs = compareReport(outDir, reports);
        for (const d of diffs) console.log(d);
        console.log(
          diffs.length
            ? `reports/ differs from the report rebuilt from ${runs} (${diffs.length} files); ` +
              "rebuild it with `deno task tp report --ship`"
            : `reports/ matches the report rebuilt from ${runs}, byte for byte (${secs} s)`,
        );
        return diffs.length ? 1 : 0;
      }
      const copied = publishReports(outDir, reports);
      console.log(`reports/ rebuilt from ${runs}: ${copied.length} files (${secs} s)`);
      return 0;
    } finally {
      if (!values.out) rmSync(outDir, { recursive: true, force: true });
    }
  });
}
