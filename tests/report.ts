/**
 * The report a judging machine builds: the aggregate stage planned, run and published at a
 * repository root, as `reproduce` would, with a fixture run's cell as its judged upstream.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { CellPlan, Gpu } from "../pipeline/engine/mod.ts";
import { AggregateParams, aggregateStage } from "../stages/aggregate/mod.ts";
import { runCellDirect } from "./stages.ts";

/**
 * Builds and publishes the report at `root` (which holds the shipped runs, claims.json and the
 * paper's figures) over the fixture cell of `run`, a folder `writeFixtureRun` wrote, on a machine
 * with `gpus`; the cell is written to `root`/cell. Returns the aggregate's plan.
 */
export async function reportHere(root: string, run: string, gpus: Gpu[]): Promise<CellPlan> {
  const dir = join(run, "cells", "fixture", "basic");
  const ctx = {
    params: AggregateParams.parse({}),
    root,
    upstream: { verify: [{ id: "basic", key: "k", digest: "d", dir, summary: null }] },
    toolchain: { os: "linux", arch: "x86_64", deno: "x", gpus },
    env: {},
    log: () => {},
  };
  const [plan] = await aggregateStage.plan(ctx);
  const outDir = join(root, "cell");
  mkdirSync(outDir);
  await runCellDirect(aggregateStage, plan, ctx, outDir);
  await aggregateStage.publish!({
    cells: [{ id: "report", key: "k", digest: "d", dir: outDir, summary: null }],
    root,
    log: () => {},
  });
  return plan;
}
