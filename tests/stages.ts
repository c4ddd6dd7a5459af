/**
 * Stages for tests that run real stages through the engine: a stage module in its place in the
 * DAG, and a stand-in that writes a fixed TraceSet fragment in place of an upstream stage.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { type AnyStage, defineStage, type Stage } from "../pipeline/engine/mod.ts";
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
