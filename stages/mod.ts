/**
 * The stage registry, in pipeline order, and the only place the DAG is declared: each entry names
 * the stages whose finished cells its stage plans from. Stage modules load lazily, so a command that runs only
 * the GPU stages never loads DuckDB's native binding (which belongs to collect/extract/aggregate).
 */
import type { AnyStage, Stage } from "../pipeline/engine/mod.ts";

/** A stage's place in the DAG and how to load it. */
export interface StageEntry {
  name: string;
  upstream: string[];
  load: () => Promise<Stage>;
}

/** Every stage, in the order they run. */
export const STAGES: StageEntry[] = [
  {
    name: "definitions",
    upstream: [],
    load: async () => (await import("./definitions/mod.ts")).definitionsStage as Stage,
  },
  {
    name: "collect",
    upstream: [],
    load: async () => (await import("./collect/mod.ts")).collectStage as Stage,
  },
  {
    name: "extract",
    upstream: ["definitions", "collect"],
    load: async () => (await import("./extract/mod.ts")).extractStage as Stage,
  },
  {
    name: "generate",
    upstream: ["definitions", "extract"],
    load: async () => (await import("./generate/mod.ts")).generateStage as Stage,
  },
  {
    name: "compile",
    upstream: ["definitions", "generate"],
    load: async () => (await import("./compile/mod.ts")).compileStage as Stage,
  },
  {
    name: "verify",
    upstream: ["definitions", "extract", "generate", "compile"],
    load: async () => (await import("./verify/mod.ts")).verifyStage as Stage,
  },
  {
    name: "time",
    upstream: ["definitions", "extract", "generate", "verify"],
    load: async () => (await import("./time/mod.ts")).timeStage as Stage,
  },
  {
    name: "apply",
    upstream: ["definitions", "generate", "verify", "time"],
    load: async () => (await import("./apply/mod.ts")).applyStage as Stage,
  },
  {
    name: "aggregate",
    upstream: ["definitions", "extract", "generate", "compile", "verify", "time"],
    load: async () => (await import("./aggregate/mod.ts")).aggregateStage as Stage,
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
    if (load === "all" || load.has(e.name)) return { ...await e.load(), upstream: e.upstream };
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
