/**
 * extract: maps collect's kernel-call events to definitions, picks a representative workload set
 * per definition (deterministic for a seed), writes FlashInfer workloads JSONL + safetensors index
 * blobs, and reports what matched nothing. One cell per model, plus one that repairs the official
 * workloads (their blobs were never published).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import type { TopLevelSpec } from "vega-lite";
import { z } from "zod";
import { pathDigest } from "../../pipeline/engine/codegraph.ts";
import { sha256 } from "../../pipeline/engine/hash.ts";
import type { Definition, Workload } from "../../pipeline/trace/schema.ts";
import { type CellPlan, type CellResult, defineStage } from "../../pipeline/engine/stage.ts";
import {
  formatJsonl,
  loadTraceSet,
  workloadsPath,
  writeFileAtomic,
} from "../../pipeline/trace/traceset.ts";
import { renderSvg } from "../../pipeline/lib/vega.ts";
import { openDuckDB } from "../../pipeline/lib/duckdb.ts";
import type { BatchEntry } from "../../pipeline/serving/simulate.ts";
import { runSimulation, type SimConfig } from "../../pipeline/serving/run.ts";
import { checkWorkload } from "../../pipeline/trace/constraints.ts";
import {
  type Family,
  isAttention,
  matchDefinitions,
  neededDefinitionName,
  siteFamily,
} from "./families.ts";
import { repairOfficial } from "./repair.ts";
import { type Candidate, quantiles, selectRepresentative } from "./select.ts";
import { attentionTensors, buildWorkload, type Built } from "./workloads.ts";

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
});
export type ExtractParams = z.infer<typeof ExtractParams>;

const abs = (root: string, p: string) => (isAbsolute(p) ? p : resolve(root, p));

interface SimSummary {
  kind: "sim";
  model: string;
  engine: string;
  pageSize: number;
  smScale: number;
  routedScalingFactor: number;
}

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
    return Promise.resolve(cells);
  },
  async run(job, ctx) {
    const pl = job.plan.payload as
      | { kind: "model"; model: string; collect: CellResult[]; defsDir: string }
      | { kind: "repair"; root: string; defsDir: string };
    const defs = [...loadTraceSet(pl.defsDir).set.definitions.values()];
    if (pl.kind === "repair") {
      const r = repairOfficial(pl.root, defs, job.outDir, ctx.params.seed);
      job.setSummary(r);
      job.log(
        `repaired ${r.workloads} official workloads (${r.blobs} blobs), ${r.unrepairable.length} unrepairable`,
      );
      return;
    }
    const res = await extractModel(ctx.root, pl.collect, defs, job.outDir, ctx.params, job.log);
    job.setSummary(res);
  },
});

/** Per-definition outcome, for the report. */
export interface DefinitionReport {
  definition: string;
  family: Family;
  events: number;
  distinctShapes: number;
  chosen: number;
  /** Share of this definition's estimated time in the chosen shapes. */
  chosenTimeShare: number;
  /** Share of the model's total estimated kernel time in this definition. */
  timeShareOfModel: number;
  axes: Array<
    {
      axis: string;
      min: number;
      p10: number;
      p50: number;
      p90: number;
      max: number;
      chosenMin: number;
      chosenMax: number;
    }
  >;
}

/** extract's summary of one model cell. */
export interface ExtractSummary {
  model: string;
  workloads: number;
  definitions: DefinitionReport[];
  missing: Array<
    {
      name: string;
      family: Family;
      consts: Record<string, number>;
      events: number;
      timeShare: number;
    }
  >;
  unsupportedConstraints: string[];
  dumpWorkloads: number;
}

interface SiteRow {
  cell: number;
  siteIdx: number;
  site: string;
  opType: string;
  when: string;
  mult: number;
  consts: Record<string, number>;
}

const KEY_AXES: Record<string, string[]> = {
  attention: ["batch_size", "avg_kv_len", "avg_q_len"],
  other: ["rows"],
};

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
  const { con, close } = await openDuckDB();
  const sq = (s: string) => `'${s.replaceAll("'", "''")}'`;
  const sites: SiteRow[] = [];
  // Candidate shapes per (definition family + consts) group.
  const groups = new Map<
    string,
    {
      family: Family;
      consts: Record<string, number>;
      defs: Definition[];
      cands: Candidate[];
      sites: SiteRow[];
    }
  >();
  let totalTime = 0;
  try {
    for (let ci = 0; ci < sims.length; ci++) {
      const dir = sims[ci].dir;
      const rows =
        (await con.runAndReadAll(`SELECT site_idx, site, op_type, run_when, multiplicity, consts
        FROM read_parquet(${sq(join(dir, "sites.parquet"))}) ORDER BY site_idx`)).getRows();
      for (const r of rows) {
        sites.push({
          cell: ci,
          siteIdx: Number(r[0]),
          site: String(r[1]),
          opType: String(r[2]),
          when: String(r[3]),
          mult: Number(r[4]),
          consts: JSON.parse(String(r[5])),
        });
      }
      const tt = await con.runAndReadAll(
        `SELECT sum(e.est_us * s.multiplicity) FROM read_parquet(${
          sq(join(dir, "events.parquet"))
        }) e
        JOIN read_parquet(${sq(join(dir, "sites.parquet"))}) s USING (site_idx)`,
      );
      totalTime += Number(tt.getRows()[0][0] ?? 0);
    }
    for (const s of sites) {
      const fam = siteFamily(s.opType, s.when);
      if (!fam) continue;
      const gk = `${fam}:${JSON.stringify(s.consts)}`;
      let g = groups.get(gk);
      if (!g) {
        g = {
          family: fam,
          consts: s.consts,
          defs: matchDefinitions(defs, fam, s.consts),
          cands: [],
          sites: [],
        };
        groups.set(gk, g);
      }
      g.sites.push(s);
      const ev = sq(join(sims[s.cell].dir, "events.parquet"));
      const q = isAttention(fam)
        ? `SELECT batch_size, round(total_kv / batch_size)::INTEGER, round(total_q / batch_size)::INTEGER,
             count(*), sum(est_us) * ${s.mult}, min(iter)
           FROM read_parquet(${ev}) WHERE site_idx = ${s.siteIdx} GROUP BY ALL ORDER BY 1, 2, 3`
        : `SELECT m, count(*), sum(est_us) * ${s.mult}, min(iter)
           FROM read_parquet(${ev}) WHERE site_idx = ${s.siteIdx} GROUP BY m ORDER BY 1`;
      for (const r of (await con.runAndReadAll(q)).getRows()) {
        const nums = r.map(Number);
        g.cands.push(
          isAttention(fam)
            ? {
              key: nums.slice(0, 3),
              count: nums[3],
              timeUs: nums[4],
              cell: s.cell,
              iter: nums[5],
            }
            : { key: [nums[0]], count: nums[1], timeUs: nums[2], cell: s.cell, iter: nums[3] },
        );
      }
    }
  } finally {
    close();
  }
  // Merge equal keys across sites/cells (e.g. the o_proj and down_proj of one GEMM shape).
  for (const g of groups.values()) {
    const m = new Map<string, Candidate>();
    for (const c of g.cands) {
      const k = `${c.cell}:${c.key.join(",")}`;
      const prev = m.get(k);
      if (prev) {
        prev.count += c.count;
        prev.timeUs += c.timeUs;
        prev.iter = Math.min(prev.iter, c.iter);
      } else m.set(k, { ...c });
    }
    g.cands = [...m.values()];
  }

  const summary: ExtractSummary = {
    model: (sims[0]?.summary as SimSummary)?.model ?? "",
    workloads: 0,
    definitions: [],
    missing: [],
    unsupportedConstraints: [],
    dumpWorkloads: 0,
  };
  // Choose per definition; attention picks need page tables from a replay.
  const picks: Array<{ def: Definition; family: Family; cand: Candidate }> = [];
  for (
    const g of [...groups.values()].sort((
      a,
      b,
    ) => (a.family + JSON.stringify(a.consts) < b.family + JSON.stringify(b.consts) ? -1 : 1))
  ) {
    const events = g.cands.reduce((a, c) => a + c.count, 0);
    const time = g.cands.reduce((a, c) => a + c.timeUs, 0);
    if (!g.defs.length) {
      summary.missing.push({
        name: neededDefinitionName(g.family, g.consts),
        family: g.family,
        consts: g.consts,
        events,
        timeShare: time / (totalTime || 1),
      });
      continue;
    }
    if (!g.cands.length) continue; // the site never ran in this trace
    for (const def of g.defs) {
      // Per-definition stream of the selection seed, so adding a definition changes no other pick.
      const seed = parseInt(sha256(`${p.seed}:${def.name}`).slice(0, 8), 16);
      const idx = selectRepresentative(g.cands, p.sampleSize, seed, p.timeWeight);
      const chosen = idx.map((i) => g.cands[i]);
      for (const c of chosen) picks.push({ def, family: g.family, cand: c });
      const names = isAttention(g.family) ? KEY_AXES.attention : [keyAxisName(g.family)];
      summary.definitions.push({
        definition: def.name,
        family: g.family,
        events,
        distinctShapes: g.cands.length,
        chosen: chosen.length,
        chosenTimeShare: chosen.reduce((a, c) => a + c.timeUs, 0) / (time || 1),
        timeShareOfModel: time / (totalTime || 1),
        axes: names.map((axis, d) => {
          const [min, p10, p50, p90, max] = quantiles(g.cands, d, [0, 0.1, 0.5, 0.9, 1]);
          return {
            axis,
            min,
            p10,
            p50,
            p90,
            max,
            chosenMin: Math.min(...chosen.map((c) => c.key[d])),
            chosenMax: Math.max(...chosen.map((c) => c.key[d])),
          };
        }),
      });
    }
  }
  // Replay each collect cell once, capturing the batches of the chosen attention iterations.
  const need = new Map<number, Set<number>>();
  for (const pk of picks) {
    if (!isAttention(pk.family)) continue;
    need.set(pk.cand.cell, (need.get(pk.cand.cell) ?? new Set()).add(pk.cand.iter));
  }
  const captured = new Map<string, { decode: boolean; entries: BatchEntry[] }>();
  for (const [ci, iters] of [...need].sort((a, b) => a[0] - b[0])) {
    const cfg = JSON.parse(readFileSync(join(sims[ci].dir, "config.json"), "utf8")) as SimConfig;
    const t0 = performance.now();
    runSimulation(root, cfg, (iter, decode, entries) => {
      if (!iters.has(iter)) return;
      captured.set(`${ci}:${iter}`, {
        decode,
        entries: entries.map((e) => ({
          ...e,
          pages: Array.prototype.slice.call(e.pages, 0, Math.ceil(e.kv / cfg.engine.pageSize)),
        })),
      });
    });
    log(
      `replayed ${sims[ci].id} for ${iters.size} iterations in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s`,
    );
  }
  const byDef = new Map<string, { def: Definition; built: Map<string, Built> }>();
  for (const pk of picks) {
    const s = sims[pk.cand.cell].summary as SimSummary;
    const scalars = {
      sm_scale: s.smScale,
      routed_scaling_factor: s.routedScalingFactor,
      local_expert_offset: 0,
      topK: 50,
      topP: 0.9,
    };
    const cfg = JSON.parse(
      readFileSync(join(sims[pk.cand.cell].dir, "config.json"), "utf8"),
    ) as SimConfig;
    scalars.topK = cfg.engine.topK;
    scalars.topP = cfg.engine.topP;
    const prov = {
      source: "tracepipe-collect",
      cell: sims[pk.cand.cell].id,
      iteration: String(pk.cand.iter),
    };
    let built: Built;
    if (isAttention(pk.family)) {
      const cap = captured.get(`${pk.cand.cell}:${pk.cand.iter}`);
      if (!cap) {
        throw new Error(
          `extract: replay of ${sims[pk.cand.cell].id} did not reach iteration ${pk.cand.iter}`,
        );
      }
      const t = attentionTensors(cap.entries, s.pageSize);
      const bs = cap.entries.length;
      const totalQ = t.qoIndptr[bs], totalKv = t.kvTokIndptr[bs];
      // The replay must reproduce the recorded event exactly (guards determinism).
      if (
        bs !== pk.cand.key[0] || Math.round(totalKv / bs) !== pk.cand.key[1] ||
        Math.round(totalQ / bs) !== pk.cand.key[2]
      ) {
        throw new Error(
          `extract: replay of ${
            sims[pk.cand.cell].id
          } iteration ${pk.cand.iter} differs from its recorded event`,
        );
      }
      const ragged = pk.family.includes("ragged");
      built = buildWorkload(
        pk.def,
        {
          batch_size: bs,
          len_indptr: bs + 1,
          total_q: totalQ,
          total_kv: totalKv,
          num_kv_indices: t.kvIndices.length,
          num_pages: t.numPages,
        },
        ragged ? { qo_indptr: t.qoIndptr, kv_indptr: t.kvTokIndptr } : {
          qo_indptr: t.qoIndptr,
          kv_indptr: t.kvIndptr,
          kv_indices: t.kvIndices,
          kv_last_page_len: t.lastLen,
        },
        scalars,
        prov,
      );
    } else {
      const m = pk.cand.key[0];
      built = buildWorkload(pk.def, { M: m, batch_size: m, seq_len: m }, {}, scalars, prov);
    }
    const e = byDef.get(pk.def.name) ?? { def: pk.def, built: new Map() };
    e.built.set(built.workload.uuid, built);
    byDef.set(pk.def.name, e);
  }
  // Merge engine-dump workloads for the definitions this model uses.
  for (const d of dumps) {
    const { set } = loadTraceSet(d.dir);
    for (const [name, wls] of set.workloads) {
      const e = byDef.get(name);
      if (!e) continue;
      for (const w of wls) {
        const blobs = new Set(
          Object.values(w.inputs).flatMap((i) => (i.type === "safetensors" ? [i.path] : [])),
        );
        const blob = [...blobs][0];
        e.built.set(w.uuid, {
          workload: w,
          blob: blob
            ? { path: blob.replace(/^\.\//, ""), bytes: readFileSync(join(d.dir, blob)) }
            : undefined,
        });
        summary.dumpWorkloads++;
      }
    }
  }
  // Write, then check every workload against its definition (constraints evaluated on the blobs).
  const unsupported = new Set<string>();
  for (
    const { def, built } of [...byDef.values()].sort((a, b) => (a.def.name < b.def.name ? -1 : 1))
  ) {
    const ws: Workload[] = [];
    for (const b of [...built.values()]) {
      if (b.blob) {
        mkdirSync(dirname(join(out, b.blob.path)), { recursive: true });
        writeFileSync(join(out, b.blob.path), b.blob.bytes);
      }
      ws.push(b.workload);
    }
    writeFileAtomic(
      join(out, workloadsPath(def.op_type, def.name)),
      formatJsonl(
        ws.map((w) => ({ definition: def.name, workload: w, solution: null, evaluation: null })),
      ),
    );
    for (const w of ws) {
      const chk = checkWorkload(def, w, out);
      if (chk.problems.length) {
        throw new Error(`extract: workload ${w.uuid} of ${def.name}: ${chk.problems.join("; ")}`);
      }
      for (const u of chk.unsupported) unsupported.add(`${def.name}: ${u}`);
    }
    summary.workloads += ws.length;
  }
  summary.unsupportedConstraints = [...unsupported].sort();
  writeFileSync(join(out, "report.json"), JSON.stringify(summary, null, 2) + "\n");
  writeFileSync(join(out, "report.md"), renderReport(summary));
  writeFileSync(join(out, "report-axes.svg"), await renderSvg(axisChartSpec(summary)));
  return summary;
}

function keyAxisName(f: Family): string {
  return f === "gemm" ? "M" : f === "moe" ? "seq_len" : "batch_size";
}

/**
 * Vega-Lite chart of the report's axis distributions: per (definition, axis), the events' range
 * (min..max, thin), their p10..p90 (thick) and median (tick), with the chosen workloads' range below.
 */
export function axisChartSpec(s: ExtractSummary): TopLevelSpec {
  const rows = s.definitions.flatMap((d) =>
    d.axes.map((a) => ({ row: `${d.definition} · ${a.axis}`, ...a }))
  );
  const y = { field: "row", type: "nominal", title: null, sort: null, axis: { labelLimit: 420 } };
  const x = (field: string) => ({
    field,
    type: "quantitative",
    scale: { type: "symlog" },
    title: "axis value (events: grey range, p10–p90 bar, median tick; chosen workloads: orange)",
  });
  return {
    title: `Workload axes: ${s.model}`,
    width: 520,
    height: { step: 16 },
    data: { values: rows },
    config: { font: "Helvetica, Arial, sans-serif" },
    layer: [
      { mark: { type: "rule", color: "#bbb" }, encoding: { y, x: x("min"), x2: { field: "max" } } },
      {
        mark: { type: "bar", color: "#6c8ebf", height: 6 },
        encoding: { y, x: x("p10"), x2: { field: "p90" } },
      },
      { mark: { type: "tick", color: "#1f3b66", thickness: 2 }, encoding: { y, x: x("p50") } },
      {
        mark: { type: "rule", color: "#e8803a", strokeWidth: 2, yOffset: 6 },
        encoding: { y, x: x("chosenMin"), x2: { field: "chosenMax" } },
      },
    ],
  } as TopLevelSpec;
}

/** Markdown workload report: per definition, axis distributions and time shares; then the gaps. */
export function renderReport(s: ExtractSummary): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const lines = [
    `# Workload report: ${s.model}`,
    "",
    `${s.workloads} workloads (${s.dumpWorkloads} from engine dumps).`,
    "",
  ];
  lines.push(
    "| definition | events | distinct shapes | chosen | time share of model | chosen shapes' share of its time |",
  );
  lines.push("|---|---:|---:|---:|---:|---:|");
  for (const d of s.definitions) {
    lines.push(
      `| ${d.definition} | ${d.events} | ${d.distinctShapes} | ${d.chosen} | ${
        pct(d.timeShareOfModel)
      } | ${pct(d.chosenTimeShare)} |`,
    );
  }
  lines.push("", "## Axis distributions (events, weighted by count; chosen range)", "");
  lines.push("![axis distributions](report-axes.svg)", "");
  lines.push(
    "| definition | axis | min | p10 | p50 | p90 | max | chosen min..max |",
    "|---|---|---:|---:|---:|---:|---:|---|",
  );
  for (const d of s.definitions) {
    for (const a of d.axes) {
      lines.push(
        `| ${d.definition} | ${a.axis} | ${a.min} | ${a.p10} | ${a.p50} | ${a.p90} | ${a.max} | ${a.chosenMin}..${a.chosenMax} |`,
      );
    }
  }
  lines.push("", "## Events that match no definition", "");
  if (!s.missing.length) lines.push("None.");
  else {
    lines.push(
      "| needed definition | family | constant axes | events | time share |",
      "|---|---|---|---:|---:|",
    );
    for (const m of s.missing) {
      lines.push(
        `| ${m.name} | ${m.family} | ${JSON.stringify(m.consts)} | ${m.events} | ${
          pct(m.timeShare)
        } |`,
      );
    }
  }
  if (s.unsupportedConstraints.length) {
    lines.push(
      "",
      "## Constraints not evaluated",
      "",
      ...s.unsupportedConstraints.map((u) => `- ${u}`),
    );
  }
  return lines.join("\n") + "\n";
}
