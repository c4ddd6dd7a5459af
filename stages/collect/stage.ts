/**
 * collect: replays public request traces through a model of an SGLang-like engine and records
 * every kernel call it would make (Parquet through DuckDB). One cell per (trace, model, engine
 * config), plus one cell per engine dump (an existing FlashInfer TraceSet) whose workloads are
 * carried over for extract to merge.
 */
import { cpSync, existsSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { z } from "zod";
import {
  type CellPlan,
  defineStage,
  formatDiagnostic,
  ParamError,
  sha256,
  sha256File,
} from "../../pipeline/engine/mod.ts";
import {
  EngineConfig,
  modelSlug,
  ModelSpec,
  resolvePath,
  resolveTrace,
  runSimulation,
  type SimConfig,
  TraceSpec,
} from "../../pipeline/serving/mod.ts";
import { writeEventParquet } from "./events.ts";
import { listFiles, loadTraceSet } from "../../pipeline/trace/mod.ts";

/** collect's params. */
export const CollectParams = z.object({
  traces: z.array(TraceSpec).default([{ name: "azure-conv", rate: 2, seed: 0 }]),
  models: z.array(ModelSpec).default([
    { name: "meta-llama/Llama-3.1-8B", tp: 1, ep: 1 },
    { name: "Qwen/Qwen3-30B-A3B", tp: 1, ep: 1 },
    { name: "deepseek-ai/DeepSeek-V3", tp: 8, ep: 8, gpuMemoryGB: 141 },
  ]),
  engines: z.array(EngineConfig).default([EngineConfig.parse({})]),
  /** Model-configs file (repo-relative). */
  modelConfigs: z.string().default("data/models/model-configs.json"),
  /** Seed of the MoE routing model. */
  seed: z.number().int().nonnegative().default(0),
  /** Zipf exponent of expert popularity in the routing model (0 = uniform). */
  expertSkew: z.number().nonnegative().default(0.5),
  /** Engine dumps: FlashInfer TraceSet roots whose workloads join the simulated ones. */
  dumps: z.array(z.string()).default([]),
});
export type CollectParams = z.infer<typeof CollectParams>;

/** The collect stage. */
export const collectStage = defineStage<CollectParams>({
  name: "collect",
  description:
    "Replay request traces through an SGLang-like engine model; record kernel-call events (Parquet)",
  policy: "pure",
  params: CollectParams,
  env: [],
  resource: "cpu",
  module: import.meta.url,
  toolchainFacts: () => ({}),
  plan(ctx) {
    const p = ctx.params;
    const cells: CellPlan[] = [];
    const mcDigest = fileDigest(ctx.root, p.modelConfigs, ["modelConfigs"], "model-configs file");
    for (const [i, t] of p.traces.entries()) {
      let trace: SimConfig["trace"];
      try {
        trace = resolveTrace(t);
      } catch (e) {
        // An unknown name with no path: the user's param, not a bug (one line, exit 2).
        throw new ParamError(["traces", i, "name"], (e as Error).message.replace(/^collect: /, ""));
      }
      const traceDigest = fileDigest(
        ctx.root,
        trace.path,
        ["traces", i, t.path !== undefined ? "path" : "name"],
        `serving-trace file of "${t.name}"`,
      );
      for (const model of p.models) {
        for (const engine of p.engines) {
          const cfg: SimConfig = {
            trace,
            model,
            modelConfigs: p.modelConfigs,
            engine,
            seed: p.seed,
            expertSkew: p.expertSkew,
          };
          cells.push({
            id: `${t.name}/${modelSlug(model.name)}/${engine.name}`,
            params: cfg,
            inputs: { trace: traceDigest, modelConfigs: mcDigest },
            payload: { kind: "sim", cfg },
          });
        }
      }
    }
    for (const [i, d] of p.dumps.entries()) {
      const root = resolvePath(ctx.root, d);
      if (!existsSync(root)) {
        throw new ParamError(["dumps", i], `engine dump ${root} does not exist`);
      }
      cells.push({
        id: `dump/${basename(root).replace(/[^A-Za-z0-9._-]/g, "-")}`,
        params: { dump: d },
        inputs: { dump: dumpDigest(root) },
        payload: { kind: "dump", root },
      });
    }
    return Promise.resolve(cells);
  },
  async run(job, ctx) {
    const payload = job.plan.payload as { kind: "sim"; cfg: SimConfig } | {
      kind: "dump";
      root: string;
    };
    if (payload.kind === "dump") {
      runDump(payload.root, job.outDir, job.log);
      job.setSummary({ kind: "dump" });
      return;
    }
    const cfg = payload.cfg;
    const t0 = performance.now();
    const { shape, engine, pool, sim } = runSimulation(ctx.root, cfg);
    const counts = await writeEventParquet(job.outDir, sim, shape, engine);
    const ok = sim.requests.filter((r) => !r.rejected);
    const summary = {
      kind: "sim",
      trace: cfg.trace.name,
      model: cfg.model.name,
      engine: engine.name,
      pageSize: engine.pageSize,
      requests: sim.requests.length,
      rejected: sim.requests.length - ok.length,
      iterations: counts.iterations,
      events: counts.events,
      poolPages: pool,
      peakUsedPages: sim.peakUsedPages,
      peakDecodeBatch: sim.peakDecodeBatch,
      promptTokens: ok.reduce((a, r) => a + r.prompt, 0),
      outputTokens: ok.reduce((a, r) => a + r.output, 0),
      generatedTokens: ok.reduce((a, r) => a + r.generated, 0),
      hitTokens: ok.reduce((a, r) => a + r.hitTokens, 0),
      extendTokens: ok.reduce((a, r) => a + r.extendTokens, 0),
      decodeSteps: ok.reduce((a, r) => a + r.decodeSteps, 0),
      retractions: ok.reduce((a, r) => a + r.retractions, 0),
      simulatedSeconds: sim.endUs / 1e6,
      smScale: shape.smScale,
      eps: shape.eps,
      routedScalingFactor: shape.routedScalingFactor,
      localExperts: shape.localExperts,
      weightGB: shape.weightBytes / 1e9,
    };
    writeFileSync(join(job.outDir, "config.json"), JSON.stringify(cfg, null, 2) + "\n");
    writeFileSync(join(job.outDir, "summary.json"), JSON.stringify(summary, null, 2) + "\n");
    job.setSummary(summary);
    job.log(
      `${job.plan.id}: ${counts.iterations} iterations, ${counts.events} events in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s`,
    );
  },
});

/** The digest of a file a param names; a missing file is the param's problem (ParamError). */
function fileDigest(root: string, file: string, path: PropertyKey[], what: string): string {
  const abs = resolvePath(root, file);
  if (!existsSync(abs)) throw new ParamError(path, `${what} ${abs} does not exist`);
  return sha256File(abs);
}

function dumpDigest(root: string): string {
  // Content digest: every definition and workload file, and every blob the workloads reference.
  const { set } = loadTraceSet(root);
  const parts: string[] = [...set.files.values()].map((f) => `${f}:${sha256File(join(root, f))}`);
  for (const f of [...listFiles(join(root, "workloads"), ".jsonl")]) {
    parts.push(`${f}:${sha256File(f)}`);
  }
  for (const [def, wls] of set.workloads) {
    for (const w of wls) {
      for (const inp of Object.values(w.inputs)) {
        if (inp.type === "safetensors") {
          const p = join(root, inp.path);
          parts.push(`${def}:${inp.path}:${existsSync(p) ? sha256File(p) : "missing"}`);
        }
      }
    }
  }
  return sha256([...new Set(parts)].sort().join(";"));
}

/** Copies an engine dump's definitions, workloads and blobs into the cell (errors name the file). */
function runDump(root: string, out: string, log: (m: string) => void) {
  const { set, diagnostics } = loadTraceSet(root, { checkBlobs: true });
  const errors = diagnostics.filter((d) => d.level === "error");
  if (errors.length) {
    throw new Error(`engine dump ${root}:\n${errors.map(formatDiagnostic).join("\n")}`);
  }
  for (const sub of ["definitions", "workloads", "blob"]) {
    if (existsSync(join(root, sub))) cpSync(join(root, sub), join(out, sub), { recursive: true });
  }
  log(`dump ${root}: ${[...set.workloads.values()].reduce((a, w) => a + w.length, 0)} workloads`);
}
