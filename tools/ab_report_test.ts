/**
 * tools/ab-report.py on a synthetic A/B archive: cells per GPU-minute from the engine's summary table,
 * the job phases, and how far the same cells' candidate medians moved between two runs of one checkout
 * (the second run's cells told apart by the key tools/gpu-ab.sh changes).
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../pipeline/engine/mod.ts";
import { assertMatch } from "../tests/assert.ts";

const SECOND_RUN_MARK = 268435457;

/** One run of the archive: its log and a store holding one time cell with the given candidate median. */
async function writeRun(
  root: string,
  run: string,
  medianMs: number,
  verifyS: number,
  timeS: number,
) {
  mkdirSync(join(root, run));
  writeFileSync(
    join(root, run, `${run}.log`),
    [
      `[time] some_def: timed 1 solutions x 1 workloads in 1.0s [prepare 0.50s, cells 2.25s]`,
      `compile          26       0   26       0             0  27.0s`,
      `verify           78       0   78       0             0  ${verifyS}s`,
      `time             72       0   72       0             0  ${timeS}s`,
    ].join("\n") + "\n",
  );
  const store = mkdtempSync(join(tmpdir(), "tp-ab-store-"));
  const cell = join(store, "cells", "time", "k" + run);
  mkdirSync(join(cell, "out"), { recursive: true });
  const params = run.endsWith("2") ? { input_sets_max_bytes: SECOND_RUN_MARK } : {};
  writeFileSync(join(cell, "cell.json"), JSON.stringify({ keyDocument: { params } }));
  writeFileSync(
    join(cell, "out", "timing.json"),
    JSON.stringify({
      solution: "sol",
      workload: "wl",
      details: {
        candidate: { median_ms: medianMs, n: 40 },
        gate: {
          candidate: {
            opened_by_host: 30,
            hold_expired: 10,
            host_bound_rounds: 1,
            harness_prep_median_ms: 0.0123,
          },
        },
        phase_s: { candidate: 0.5 },
      },
    }),
  );
  const tar = await new Deno.Command("tar", {
    args: ["cJf", join(root, `${run}.store.tar.xz`), "-C", store, "cells"],
  }).output();
  if (tar.code !== 0) throw new Error(new TextDecoder().decode(tar.stderr));
}

Deno.test("ab-report: cells per GPU-minute, job phases and run-to-run agreement of the same cells", async () => {
  const root = mkdtempSync(join(tmpdir(), "tp-ab-"));
  await writeRun(root, "new1", 0.010, 32.5, 37.6);
  await writeRun(root, "new2", 0.011, 38.6, 41.8);
  const o = await new Deno.Command("python3", {
    args: [join(REPO_ROOT, "tools", "ab-report.py"), root],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
  // 72 cells over (32.5 + 37.6) s = 61.6 per minute; (38.6 + 41.8) s = 53.7
  assertMatch(
    out,
    /new1: compile 27\.0s, verify 78 cells 32\.5s, time 72 cells 37\.6s -> 61\.6 cells per GPU-minute/,
  );
  assertMatch(out, /new2: .* -> 53\.7 cells per GPU-minute/);
  assertMatch(out, /time job phases: prepare 0\.5s, cells 2\.2s/);
  assertMatch(out, /new1 vs new2: 1 cells; candidate medians moved median 10\.0%/);
  assertMatch(out, /host-bound \(some samples outlasted the hold\): 1 cells; .*median 10\.0%/);
  assertMatch(out, /harness prep behind the gate median 12\.3 us/);
  assertMatch(
    out,
    /new1: samples \{'candidate': 40\}; gate \{'candidate released': 30, 'candidate expired': 10\}/,
  );
});
