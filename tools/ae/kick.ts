/**
 * `deno task ae:kick`: artifact evaluation's kick-the-tires profile, on any machine (no GPU needed):
 *   1. validates the shipped dataset (data/definitions; each shipped run's run.json against its data),
 *   2. re-runs the pure stages (definitions, collect, extract, generate) in a store of its own and
 *      checks every cell's output digest against results/pure-stages.json,
 *   3. re-aggregates the shipped GPU runs and checks the committed report (reports/) byte for byte,
 *   4. runs the harness on the CPU over its small suite, the cheating solutions included,
 *   5. prints the claims table (a FAIL there is a finding, not a broken artifact).
 * Each step is timed; the exit code is 1 when a step of 1-4 failed.
 *
 *   deno task ae:kick [--store DIR] [--update-manifest]
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { REPO_ROOT, Store } from "../../pipeline/engine/mod.ts";
import { validatePath } from "../../pipeline/trace/mod.ts";

const MANIFEST = join(REPO_ROOT, "results", "pure-stages.json");
/** The stages whose outputs are byte-identical wherever they run. */
export const PURE_STAGES = ["definitions", "collect", "extract", "generate"];

/** Runs the CLI (or another command) with its output streamed; returns its exit code. */
async function sh(args: string[], cmd = Deno.execPath()): Promise<number> {
  const p = new Deno.Command(cmd, { args, cwd: REPO_ROOT, stdout: "inherit", stderr: "inherit" });
  return (await p.output()).code;
}
const tp = (...args: string[]) => sh(["run", "--allow-all", "pipeline/cli.ts", ...args]);

/** Every pure cell's output digest in `store`: "stage/cell id" → digest. */
export function pureDigests(store: Store): Record<string, string> {
  const out: Record<string, string> = {};
  for (const stage of PURE_STAGES) {
    for (const c of store.lastResults(stage) ?? []) out[`${stage}/${c.id}`] = c.digest;
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a < b ? -1 : 1));
}

/** The cells whose digest differs from the manifest's, or that only one side has. */
export function digestDiffs(want: Record<string, string>, got: Record<string, string>): string[] {
  const diffs: string[] = [];
  for (const [k, v] of Object.entries(want)) {
    if (!(k in got)) diffs.push(`${k}: not produced`);
    else if (got[k] !== v) diffs.push(`${k}: ${got[k].slice(0, 16)} (manifest ${v.slice(0, 16)})`);
  }
  for (const k of Object.keys(got)) if (!(k in want)) diffs.push(`${k}: not in the manifest`);
  return diffs;
}

async function validateStep(): Promise<string | null> {
  const { diagnostics, summary } = await validatePath(join(REPO_ROOT, "data", "definitions"));
  console.log(summary);
  const errors = diagnostics.filter((d) => d.level === "error");
  if (errors.length) return `data/definitions: ${errors.length} errors`;
  const problems: string[] = [];
  const results = join(REPO_ROOT, "results");
  for (const e of [...Deno.readDirSync(results)].filter((e) => e.isDirectory)) {
    const runJson = join(results, e.name, "run.json");
    if (!existsSync(runJson)) continue;
    const covers = JSON.parse(readFileSync(runJson, "utf8")).covers ?? {};
    const summaryFile = join(REPO_ROOT, "reports", "runs", e.name, "summary.json");
    const top = join(REPO_ROOT, "reports", "summary.json");
    const s = JSON.parse(readFileSync(existsSync(summaryFile) ? summaryFile : top, "utf8"));
    for (const k of ["definitions", "workloads", "solutions", "traces"]) {
      if (typeof covers[k] === "number" && covers[k] !== s.counts?.[k]) {
        problems.push(
          `results/${e.name}/run.json: $.covers.${k}: ${covers[k]}, the data holds ${
            s.counts?.[k]
          }`,
        );
      }
    }
    if (s.diagnostics) problems.push(`results/${e.name}: ${s.diagnostics} input diagnostics`);
    console.log(`results/${e.name}: run.json agrees with its data (${s.counts?.traces} traces)`);
  }
  for (const p of problems) console.log(p);
  return problems.length ? problems.join("; ") : null;
}

async function pureStep(storeDir: string, update: boolean): Promise<string | null> {
  const rc = await tp("reproduce", "--to", "generate", "--store", storeDir);
  if (rc !== 0) return `reproduce --to generate exited ${rc}`;
  const got = pureDigests(new Store(storeDir));
  if (update || !existsSync(MANIFEST)) {
    const doc = {
      about:
        "Output digests of the pure stages' cells (definitions, collect, extract, generate) under the default profile; `deno task ae:kick` re-runs them and compares. Rewrite with `deno task ae:kick --update-manifest` when their code or inputs change on purpose.",
      cells: got,
    };
    writeFileSync(MANIFEST, JSON.stringify(doc, null, 2) + "\n");
    console.log(`results/pure-stages.json written (${Object.keys(got).length} cells)`);
    return null;
  }
  const diffs = digestDiffs(JSON.parse(readFileSync(MANIFEST, "utf8")).cells, got);
  for (const d of diffs) console.log(`  ${d}`);
  console.log(
    `${Object.keys(got).length} pure cells, ${diffs.length} differ from results/pure-stages.json`,
  );
  return diffs.length ? `${diffs.length} pure cells differ from the manifest` : null;
}

async function harnessStep(): Promise<string | null> {
  const py = Deno.env.get("TRACEPIPE_PYTHON") ?? "/usr/bin/python3";
  const probe = await new Deno.Command(py, { args: ["-c", "import torch"], stderr: "null" })
    .output().catch(() => null);
  if (!probe?.success) {
    console.log(`SKIP: ${py} cannot import torch (apt-get install python3-torch)`);
    return null;
  }
  const rc = await sh(
    ["pipeline/harness/tests/test_harness.py", "--device", "cpu", "--jobs", "2"],
    py,
  );
  return rc === 0 ? null : `the CPU harness suite exited ${rc}`;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      store: { type: "string", default: join(REPO_ROOT, ".tracepipe", "ae-kick-store") },
      "update-manifest": { type: "boolean", default: false },
    },
  });
  const steps: [string, () => Promise<string | null>][] = [
    ["validate the shipped dataset", validateStep],
    [
      "re-run the pure stages, check digests",
      () => pureStep(values.store!, values["update-manifest"]!),
    ],
    ["re-aggregate the shipped runs, check reports/ byte for byte", async () => {
      const rc = await tp("report", "--check");
      return rc === 0 ? null : "reports/ differs from the shipped runs re-aggregated";
    }],
    ["CPU harness: small suite, cheaters included", harnessStep],
  ];
  const rows: string[] = [];
  let failed = 0;
  const t0 = performance.now();
  for (const [name, f] of steps) {
    console.log(`\n== ${name}`);
    const t = performance.now();
    const err = await f();
    const secs = ((performance.now() - t) / 1000).toFixed(1);
    rows.push(`${err ? "FAIL" : "ok  "}  ${secs.padStart(6)} s  ${name}${err ? `: ${err}` : ""}`);
    if (err) failed++;
  }
  console.log("\n== claims (decided on the newest shipped GPU run)");
  const t = performance.now();
  const rc = await tp("claims");
  rows.push(
    `${rc === 2 ? "FAIL" : "ok  "}  ${
      ((performance.now() - t) / 1000).toFixed(1).padStart(6)
    } s  ` +
      `claims printed (${
        rc === 0
          ? "no claim FAILed"
          : rc === 1
          ? "some claims FAIL: see ARTIFACT.md, deviations"
          : "claims.json broken"
      })`,
  );
  if (rc === 2) failed++;
  console.log(`\n== ae:kick summary (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  for (const r of rows) console.log(r);
  return failed ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
