/**
 * `deno task ae:full`: artifact evaluation's full profile, on a GPU machine. Re-judges everything
 * (`reproduce` into a store of its own, so no cell is reused), then compares each cell's median
 * with the newest shipped run on the same GPU model: within the run-to-run spread that run
 * measured (run.json measurements.run_to_run; --tolerance overrides), or listed. The claims are
 * decided on this run (the report's first screen, reports/latest/).
 *
 *   deno task ae:full [--store DIR] [--tolerance PCT] [--floor-us US] [--max-outside FRACTION]
 *                     [--compare-only] [--against RUN_ID] [-- reproduce options…]
 *
 * `--floor-us` (default 0.5, the resolution of CUDA events): a cell whose median moved by at most
 * this many microseconds is within, whatever the percentage.
 *
 * `--compare-only` compares what `reproduce` last published here (reports/latest/cells.csv) without
 * judging again: for a GPU machine that runs only the judging stages (docs/GPU.md: `gpu-run.sh`, then
 * `tp import` and `reproduce --from aggregate` here). `--against` names the shipped run to compare
 * with (default: the newest on the same GPU model), for when the newest is the one being checked.
 *
 * Exit 0 when reproduced (no verdict changed, at most --max-outside of the timed cells outside the
 * spread), 1 when not, 2 without a GPU or without a shipped GPU run to compare with.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { discoverToolchain, REPO_ROOT } from "../../pipeline/engine/mod.ts";
import {
  compareCells,
  comparisonLines,
  parseCellsCsv,
  TIMER_FLOOR_US,
  type Tolerance,
  toleranceText,
} from "../../pipeline/claims/mod.ts";
import { listShippedRuns, publishTarget, THIS_MACHINE } from "../../stages/aggregate/mod.ts";

/**
 * The spread a shipped run measured between two runs, in %: the p90 of each kind of cell where it
 * records both (device-bound and host-bound), else the largest p90 it records; null without any.
 */
export function measuredSpread(measurements: Record<string, unknown>): Tolerance | null {
  const r = measurements.run_to_run as Record<string, unknown> | undefined;
  if (!r) return null;
  const p90 = (o: unknown) => {
    const v = (o as Record<string, unknown> | undefined)?.p90_pct;
    return typeof v === "number" ? v : null;
  };
  const device = p90(r.device_bound), host = p90(r.host_bound);
  if (device !== null && host !== null) return { device, host };
  const p90s = [p90(r), device, host].filter((v): v is number => v !== null);
  return p90s.length ? Math.max(...p90s) : null;
}

/** The command: its exit status (0 reproduced, 1 not, 2 bad input or nothing to compare). */
export async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        store: { type: "string", default: join(REPO_ROOT, ".tracepipe", "ae-full-store") },
        tolerance: { type: "string" },
        "floor-us": { type: "string", default: String(TIMER_FLOOR_US) },
        "max-outside": { type: "string", default: "0.1" },
        "compare-only": { type: "boolean", default: false },
        against: { type: "string" },
      },
    });
  } catch (e) {
    // node:util's message for a missing or ambiguous value, as one line (no stack trace)
    console.error(`error: ${(e as Error).message.split("\n")[0]}`);
    return 2;
  }
  const { values, positionals } = parsed;
  for (const opt of ["tolerance", "floor-us", "max-outside"] as const) {
    const v = values[opt];
    if (v !== undefined && !(Number.isFinite(Number(v)) && Number(v) >= 0 && v.trim() !== "")) {
      console.error(`error: --${opt} ${v}: expected a number of at least 0`);
      return 2;
    }
  }
  const latest = publishTarget(REPO_ROOT);
  if (!values["compare-only"]) {
    const tc = await discoverToolchain();
    if (!tc.gpus.length) {
      console.error(
        "error: ae:full judges on a GPU and this machine has none (deno task tp doctor)",
      );
      return 2;
    }
    console.log(`== re-judging everything on ${tc.gpus[0].name} (store ${values.store})`);
    const t0 = performance.now();
    const rc = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "pipeline/cli.ts",
        "reproduce",
        "--store",
        values.store!,
        ...positionals,
      ],
      cwd: REPO_ROOT,
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    console.log(
      `reproduce exited ${rc.code} after ${((performance.now() - t0) / 1000).toFixed(0)} s`,
    );
    if (rc.code !== 0 && rc.code !== 1) return rc.code;
  }
  const r = compareWithShipped(REPO_ROOT, {
    tolerance: values.tolerance !== undefined ? Number(values.tolerance) : undefined,
    maxOutside: Number(values["max-outside"]),
    floorUs: Number(values["floor-us"]),
    against: values.against,
  });
  if ("error" in r) {
    console.error(`error: ${r.error}`);
    return 2;
  }
  for (const l of r.lines) console.log(l);
  writeFileSync(join(latest, "ae-full.txt"), r.lines.join("\n") + "\n");
  console.log(`\n== claims, decided on this run (${join(latest, "claims.md")})`);
  console.log(readFileSync(join(latest, "claims.md"), "utf8"));
  return r.reproduced ? 0 : 1;
}

/**
 * Compares this machine's cells (reports/latest/cells.csv) with the shipped run `against`, else the
 * newest shipped run on the same GPU model (else the newest GPU run, said so), within that run's
 * measured spread or `tolerance`.
 */
export function compareWithShipped(
  root: string,
  opts: { tolerance?: number; maxOutside: number; floorUs?: number; against?: string },
): { lines: string[]; reproduced: boolean } | { error: string } {
  const latest = publishTarget(root);
  const here = join(latest, "cells.csv");
  const runsCsv = join(latest, "runs.csv");
  const gpu = existsSync(runsCsv)
    ? readFileSync(runsCsv, "utf8").split("\n").find((l) => l.startsWith(`${THIS_MACHINE},`))
      ?.split(",")[2] ?? ""
    : "";
  const shipped = listShippedRuns(join(root, "results")).filter((r) => r.meta.gpu);
  const same = shipped.filter((r) => r.meta.gpu === gpu);
  if (opts.against !== undefined && !shipped.some((r) => r.id === opts.against)) {
    return {
      error: `--against ${opts.against}: no shipped GPU run of that id (${
        shipped.map((r) => r.id).join(", ") || "none shipped"
      })`,
    };
  }
  const ref = opts.against !== undefined
    ? shipped.find((r) => r.id === opts.against)
    : (same.length ? same : shipped).at(-1);
  if (!existsSync(here) || !ref) {
    return {
      error: `nothing to compare (${
        !existsSync(here) ? `${here} missing: run reproduce first` : "no shipped GPU run"
      })`,
    };
  }
  const lines: string[] = [];
  if (ref.meta.gpu !== gpu) {
    lines.push(
      `note: no shipped run on ${
        gpu || "this machine's GPU"
      }; comparing with ${ref.id} (${ref.meta.gpu})`,
    );
  }
  const tolerance = opts.tolerance ?? measuredSpread(ref.meta.measurements) ?? 15;
  const c = compareCells(
    parseCellsCsv(readFileSync(join(latest, "runs", ref.id, "cells.csv"), "utf8")),
    parseCellsCsv(readFileSync(here, "utf8")),
    tolerance,
    opts.maxOutside,
    opts.floorUs ?? TIMER_FLOOR_US,
  );
  lines.push(
    `== each cell's median against ${ref.id} (${toleranceText(tolerance)}: ${
      opts.tolerance !== undefined ? "--tolerance" : "its measured spread"
    })`,
  );
  lines.push(...comparisonLines(c, ref.id));
  return { lines, reproduced: c.reproduced };
}

if (import.meta.main) Deno.exit(await main(Deno.args));
