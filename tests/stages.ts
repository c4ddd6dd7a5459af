/**
 * Stages for tests that run real stages through the engine: a stage module in its place in the
 * DAG, a stand-in that writes a fixed TraceSet fragment in place of an upstream stage, an upstream
 * cell holding given files, and the toolchains of a CPU and a GPU machine.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import {
  type AnyStage,
  type CellPlan,
  type CellResult,
  defineStage,
  type PlanContext,
  type Stage,
  type Toolchain,
} from "../pipeline/engine/mod.ts";
import { FAKE_GPU, FAKE_TOOLCHAIN } from "../pipeline/engine/testdata/engine_stages.ts";
import { STAGES } from "../stages/mod.ts";

/** A stage module in its place in the DAG, with the upstream the registry gives it. */
export const registered = (stage: Stage<unknown>): AnyStage => ({
  ...stage,
  upstream: STAGES.find((e) => e.name === stage.name)!.upstream,
});

/** A stage standing in for an upstream one: one cell writing `files` (path → text). */
export function fixedStage(name: string, files: Record<string, string>): AnyStage {
  return defineStage({
    name,
    description: `fixed ${name} fragment`,
    policy: "pure",
    params: z.object({}),
    upstream: [],
    env: [],
    resource: "cpu",
    module: import.meta.url,
    toolchainFacts: () => ({}),
    plan: () => Promise.resolve([{ id: name, params: null, inputs: {} }]),
    run(job) {
      for (const [rel, text] of Object.entries(files)) {
        mkdirSync(join(job.outDir, rel, ".."), { recursive: true });
        writeFileSync(join(job.outDir, rel), text);
      }
      return Promise.resolve();
    },
  }) as AnyStage;
}

/** An upstream cell holding these files (repo-relative path → text), as a stage's plan sees it. */
export function fragmentCell(
  id: string,
  files: Record<string, string>,
  summary: unknown = null,
): CellResult {
  const dir = mkdtempSync(join(tmpdir(), "tp-fragment-"));
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(join(dir, rel, ".."), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return { id, key: id, digest: id, dir, summary };
}

/** This machine's kind for the judging stages' plans: Python with torch, no GPU. */
export const CPU_TOOLCHAIN: Toolchain = {
  ...FAKE_TOOLCHAIN,
  python: { path: "python3", version: "3.11", torch: "1.13" },
};

/** The same with one GPU. */
export const GPU_TOOLCHAIN: Toolchain = { ...CPU_TOOLCHAIN, gpus: [FAKE_GPU] };

/** Runs one planned cell of `stage` outside the engine, writing into `outDir`; returns `outDir`. */
export async function runCellDirect<P>(
  stage: Stage<P>,
  plan: CellPlan,
  ctx: PlanContext<P>,
  outDir = mkdtempSync(join(tmpdir(), "tp-cell-")),
): Promise<string> {
  await stage.run!({
    plan,
    key: "k",
    outDir,
    log: () => {},
    setSummary: () => {},
    signal: new AbortController().signal,
  }, ctx);
  return outDir;
}
