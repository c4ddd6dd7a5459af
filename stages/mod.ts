/**
 * The stage registry, in pipeline order. Stage modules load lazily, so a command that runs only
 * the GPU stages never loads DuckDB's native binding (which belongs to collect/extract/aggregate).
 */
import type { AnyStage } from "../pipeline/dag.ts";

/** A stage's place in the DAG and how to load it. */
export interface StageEntry {
  name: string;
  upstream: string[];
  load: () => Promise<AnyStage>;
}

/** Every stage, in the order they run. */
export const STAGES: StageEntry[] = [
  {
    name: "definitions",
    upstream: [],
    load: async () => (await import("./definitions/stage.ts")).definitionsStage as AnyStage,
  },
  {
    name: "collect",
    upstream: [],
    load: async () => (await import("./collect/stage.ts")).collectStage as AnyStage,
  },
  {
    name: "extract",
    upstream: ["definitions", "collect"],
    load: async () => (await import("./extract/stage.ts")).extractStage as AnyStage,
  },
  {
    name: "generate",
    upstream: ["definitions", "extract"],
    load: async () => (await import("./generate/stage.ts")).generateStage as AnyStage,
  },
  {
    name: "compile",
    upstream: ["definitions", "generate"],
    load: async () => (await import("./judging/compile.ts")).compileStage as AnyStage,
  },
  {
    name: "verify",
    upstream: ["definitions", "extract", "generate", "compile"],
    load: async () => (await import("./judging/verify.ts")).verifyStage as AnyStage,
  },
  {
    name: "time",
    upstream: ["definitions", "extract", "generate", "verify"],
    load: async () => (await import("./judging/time.ts")).timeStage as AnyStage,
  },
  {
    name: "aggregate",
    upstream: ["definitions", "extract", "generate", "compile", "verify", "time"],
    load: async () => (await import("./aggregate/stage.ts")).aggregateStage as AnyStage,
  },
];

/** Stage names in order. */
export const STAGE_NAMES = STAGES.map((s) => s.name);

/**
 * Loads the stages in `load` (by name) and stands in for the others with their name and
 * upstream only, which is all the engine needs of a stage it reuses from the last run.
 */
export async function loadStages(load: Set<string> | "all"): Promise<AnyStage[]> {
  return await Promise.all(STAGES.map(async (e) => {
    if (load === "all" || load.has(e.name)) return await e.load();
    return placeholder(e);
  }));
}

function placeholder(e: StageEntry): AnyStage {
  const fail = () => {
    throw new Error(`stage ${e.name} was not loaded`);
  };
  return {
    name: e.name,
    description: "(not loaded)",
    policy: "pure",
    params: { safeParse: () => fail() } as unknown as AnyStage["params"],
    upstream: e.upstream,
    env: [],
    resource: "cpu",
    module: "",
    toolchainFacts: () => ({}),
    plan: () => Promise.resolve(fail()),
  };
}
