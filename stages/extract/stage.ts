/**
 * extract: maps collect's kernel-call events to definitions, picks a representative workload set
 * per definition (deterministic for a seed), writes FlashInfer workloads JSONL + safetensors index
 * blobs, and reports what matched nothing. One cell per model, plus one that repairs the official
 * workloads (their blobs were never published). Engine dumps (TraceSets traced from a real model)
 * join each model's cell; with no simulated model, a cell `dumps` writes their workloads alone.
 */
import { writeFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import {
  type CellPlan,
  type CellResult,
  defineStage,
  pathDigest,
} from "../../pipeline/engine/mod.ts";
import { type Definition, loadTraceSet } from "../../pipeline/trace/mod.ts";
import { renderSvg } from "../../pipeline/lib/vega.ts";
import { buildChosenWorkloads, replayChosenIterations } from "./build.ts";
import { scanEvents, type SimSummary } from "./candidates.ts";
import { chooseShapes } from "./choose.ts";
import { repairOfficial } from "./repair.ts";
import { axisChartSpec, type ExtractSummary, renderReport } from "./report.ts";
import { mergeDumpWorkloads, writeAndCheckWorkloads } from "./write.ts";
import { writeDecodeGrid } from "./decode_write.ts";

export {
  axisChartSpec,
  type DefinitionReport,
  type ExtractSummary,
  renderReport,
} from "./report.ts";

/** extract's params. */
export const ExtractParams = z.object({
  /** Workloads per definition (about; fewer when fewer distinct shapes exist). */
  sampleSize: z.number().int().positive().default(50),
  /** Seed of the selection. */
  seed: z.number().int().nonnegative().default(0),
  /** Weight of estimated time share vs frequency share in selection (0..1). */
  timeWeight: z.number().min(0).max(1).default(0.5),
  /** TraceSet root holding the official workloads to repair (repo-relative); "" disables. */
  officialRoot: z.string().default("data"),
  /**
   * The synthetic decode-attention grid of the characterization profile (docs/CHARACTERIZATION.md),
   * written by a cell `characterization` of its own; `grid: "none"` writes none.
   */
  characterization: z.object({
    /** "main": the main head configuration's batch × KV grid; "sparse": the profile's design; "full": every factor crossed. */
    grid: z.enum(["none", "main", "sparse", "full"]).default("none"),
    /**
     * Points whose K and V pages exceed this many bytes are left out (the harness holds several
     * copies). 512 MiB keeps the sparse design's H100 time under 20 minutes (docs/CHARACTERIZATION.md).
     */
    max_kv_bytes: z.number().int().positive().default(512 * 1024 ** 2),
    /** Seed of the page order. */
    seed: z.number().int().nonnegative().default(0),
  }).prefault({}),
});
export type ExtractParams = z.infer<typeof ExtractParams>;

const abs = (root: string, p: string) => (isAbsolute(p) ? p : resolve(root, p));

/** The extract stage. */
export const extractStage = defineStage<ExtractParams>({
  name: "extract",
  description:
    "Map events to definitions; pick representative workloads with index blobs; repair official workloads",
  policy: "pure",
  params: ExtractParams,
  env: [],
  resource: "cpu",
  module: import.meta.url,
  toolchainFacts: () => ({}),
  plan(ctx) {
    const defs = ctx.upstream.definitions?.[0];
    if (!defs) throw new Error("extract: no definitions cell upstream");
    const collect = ctx.upstream.collect ?? [];
    const byModel = new Map<string, CellResult[]>();
    const dumps = collect.filter((c) => (c.summary as { kind?: string })?.kind === "dump");
    for (const c of collect) {
      const s = c.summary as SimSummary;
      if (s?.kind !== "sim") continue;
      byModel.set(s.model, [...(byModel.get(s.model) ?? []), c]);
    }
    const cells: CellPlan[] = [];
    const p = ctx.params;
    for (const [model, cs] of [...byModel].sort()) {
      const inputs: Record<string, string> = { definitions: defs.digest };
      for (const c of [...cs, ...dumps]) inputs[`collect:${c.id}`] = c.digest;
      cells.push({
        id: model.split("/").pop()!.toLowerCase(),
        params: { sampleSize: p.sampleSize, seed: p.seed, timeWeight: p.timeWeight },
        inputs,
        payload: { kind: "model", model, collect: [...cs, ...dumps], defsDir: defs.dir },
      });
    }
    if (byModel.size === 0 && dumps.length) {
      const inputs: Record<string, string> = { definitions: defs.digest };
      for (const c of dumps) inputs[`collect:${c.id}`] = c.digest;
      cells.push({
        id: "dumps",
        params: {},
        inputs,
        payload: { kind: "dumps", collect: dumps, defsDir: defs.dir },
      });
    }
    if (p.officialRoot) {
      cells.push({
        id: "official-repair",
        params: { officialRoot: p.officialRoot, seed: p.seed },
        inputs: {
          definitions: defs.digest,
          official: pathDigest(join(abs(ctx.root, p.officialRoot), "workloads")),
        },
        payload: { kind: "repair", root: abs(ctx.root, p.officialRoot), defsDir: defs.dir },
      });
    }
    if (p.characterization.grid !== "none") {
      cells.push({
        id: "characterization",
        params: { characterization: p.characterization },
        inputs: { definitions: defs.digest },
        payload: { kind: "characterization", defsDir: defs.dir },
      });
    }
    return Promise.resolve(cells);
  },
  async run(job, ctx) {
    const pl = job.plan.payload as
      | { kind: "model"; model: string; collect: CellResult[]; defsDir: string }
      | { kind: "dumps"; collect: CellResult[]; defsDir: string }
      | { kind: "repair"; root: string; defsDir: string }
      | { kind: "characterization"; defsDir: string };
    const defs = [...loadTraceSet(pl.defsDir).set.definitions.values()];
    if (pl.kind === "characterization") {
      const r = writeDecodeGrid(
        new Map(defs.map((d) => [d.name, d])),
        job.outDir,
        ctx.params.characterization,
      );
      job.setSummary(r);
      job.log(
        `decode characterization grid "${r.grid}": ${r.workloads} workloads, ${r.dropped} points over the KV budget left out, ${r.generated.length} definitions generated`,
      );
      return;
    }
    if (pl.kind === "repair") {
      const r = repairOfficial(pl.root, defs, job.outDir, ctx.params.seed);
      job.setSummary(r);
      job.log(
        `repaired ${r.workloads} official workloads (${r.blobs} blobs), ${r.unrepairable.length} unrepairable`,
      );
      return;
    }
    if (pl.kind === "dumps") {
      const r = extractDumps(pl.collect, defs, job.outDir);
      job.setSummary(r);
      job.log(
        `${r.workloads} workloads of ${r.definitions.length} definitions from ${pl.collect.length} engine dump(s)` +
          (r.unknown.length ? `; no definition for ${r.unknown.join(", ")}` : ""),
      );
      return;
    }
    const res = await extractModel(ctx.root, pl.collect, defs, job.outDir, ctx.params, job.log);
    job.setSummary(res);
  },
});

/** extract's summary of the `dumps` cell. */
export interface DumpsSummary {
  workloads: number;
  /** Definitions with at least one dumped workload, in name order. */
  definitions: string[];
  /** Definitions the dumps name that the definitions stage does not know (their workloads are left out). */
  unknown: string[];
  unsupportedConstraints: string[];
}

/** Writes the engine dumps' workloads alone (no simulated model) and checks each one. */
export function extractDumps(dumps: CellResult[], defs: Definition[], out: string): DumpsSummary {
  const byDef = new Map(defs.map((def) => [def.name, { def, built: new Map() }]));
  const unknown = new Set<string>();
  mergeDumpWorkloads(dumps, byDef, unknown);
  for (const [name, e] of byDef) if (!e.built.size) byDef.delete(name);
  const written = writeAndCheckWorkloads(byDef, out);
  const summary: DumpsSummary = {
    workloads: written.workloads,
    definitions: [...byDef.keys()].sort(),
    unknown: [...unknown].sort(),
    unsupportedConstraints: written.unsupportedConstraints,
  };
  writeFileSync(join(out, "report.json"), JSON.stringify(summary, null, 2) + "\n");
  return summary;
}

/** Runs extract for one model over its collect cells. */
export async function extractModel(
  root: string,
  collect: CellResult[],
  defs: Definition[],
  out: string,
  p: Pick<ExtractParams, "sampleSize" | "seed" | "timeWeight">,
  log: (m: string) => void,
): Promise<ExtractSummary> {
  const sims = collect.filter((c) => (c.summary as SimSummary)?.kind === "sim");
  const dumps = collect.filter((c) => (c.summary as { kind?: string })?.kind === "dump");
  const { groups, totalTime } = await scanEvents(sims, defs);
  const { definitions, missing, picks } = chooseShapes(groups.values(), totalTime, p);
  // Attention picks need page tables, which only a replay of their collect cell has.
  const captured = replayChosenIterations(root, sims, picks, log);
  const byDef = buildChosenWorkloads(sims, picks, captured);
  const dumpWorkloads = mergeDumpWorkloads(dumps, byDef);
  const written = writeAndCheckWorkloads(byDef, out);
  // Field order is the order of report.json's keys.
  const summary: ExtractSummary = {
    model: (sims[0]?.summary as SimSummary)?.model ?? "",
    workloads: written.workloads,
    definitions,
    missing,
    unsupportedConstraints: written.unsupportedConstraints,
    dumpWorkloads,
  };
  writeFileSync(join(out, "report.json"), JSON.stringify(summary, null, 2) + "\n");
  writeFileSync(join(out, "report.md"), renderReport(summary));
  writeFileSync(join(out, "report-axes.svg"), await renderSvg(axisChartSpec(summary)));
  return summary;
}
