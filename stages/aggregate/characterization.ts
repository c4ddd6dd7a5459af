/**
 * The report's decode characterization section (issue 20; docs/CHARACTERIZATION.md). It exists only
 * when an upstream extract cell wrote the grid's manifest (`characterization.json`: which workload is
 * which point) and some of its points were judged: latency and achieved bandwidth against KV length
 * per batch size and against batch size per KV length, for every head configuration, a heatmap of the
 * fastest implementation per point, and generated sentences on knees and crossovers
 * (characterization_findings.ts). The numbers come from the views of sql/95_characterization.sql.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { DuckDBConnection } from "@duckdb/node-api";
import type * as vl from "vega-lite";
import { renderSvg } from "../../pipeline/lib/vega.ts";
import { CHARACTERIZATION_FILE, readManifestPoints } from "../../pipeline/trace/mod.ts";
import type { Chart } from "./charts.ts";
import { type CharCell, findings, tokens } from "./characterization_findings.ts";
import { all, sqlString } from "./db.ts";
import type { Fragment } from "./fragment.ts";
import { html, type Table, toHtml } from "./tables.ts";

/** The section: its tables and charts (written like the others) and its HTML. */
export interface CharacterizationSection {
  tables: Table[];
  charts: Chart[];
  html: string;
}

/** Loads the grid points of every extract fragment that has a manifest; returns how many. */
export async function loadCharacterizationPoints(
  conn: DuckDBConnection,
  fragments: Fragment[],
): Promise<number> {
  let n = 0;
  for (const f of fragments.filter((f) => f.stage === "extract")) {
    const file = join(f.dir, CHARACTERIZATION_FILE);
    if (!existsSync(file)) continue;
    const points = readManifestPoints(file);
    const num = (v: number) => (Number.isFinite(v) ? String(v) : "NULL");
    // A few hundred rows: plain INSERTs, chunked to keep each statement small.
    for (let i = 0; i < points.length; i += 500) {
      const values = points.slice(i, i + 500).map((p) =>
        `(${
          [
            sqlString(p.uuid),
            sqlString(p.definition),
            sqlString(p.config),
            num(p.num_qo_heads),
            num(p.num_kv_heads),
            num(p.head_dim),
            num(p.page_size),
            num(p.batch_size),
            num(p.kv_len),
            num(p.kv_bytes),
            sqlString(p.sweeps.join(" ")),
          ].join(", ")
        })`
      );
      await conn.run(`INSERT INTO characterization_points VALUES ${values.join(", ")}`);
    }
    n += points.length;
  }
  return n;
}

const FONT = { font: "Helvetica, Arial, sans-serif" };
const LOG2 = { type: "log", base: 2 } as const;

/** Latency (or % of copy bandwidth) against one axis, one panel per value of the other. */
function curveSpec(
  title: string,
  rows: CharCell[],
  x: "kv_len" | "batch_size",
  y: "latency_us" | "pct_copy_bw",
): vl.TopLevelSpec {
  const facet = x === "kv_len" ? "batch_size" : "kv_len";
  return {
    title,
    config: { ...FONT },
    data: { values: rows.map((r) => ({ ...r, latency_us: r.latency_ms * 1e3 })) },
    facet: { field: facet, type: "ordinal", title: facet === "kv_len" ? "KV length" : "batch" },
    columns: 5,
    spec: {
      width: 170,
      height: 130,
      mark: { type: "line", point: { size: 14 } },
      encoding: {
        x: {
          field: x,
          type: "quantitative",
          scale: LOG2,
          title: x === "kv_len" ? "KV length (tokens)" : "batch size",
        },
        y: {
          field: y,
          type: "quantitative",
          ...(y === "latency_us" ? { scale: { type: "log" } } : {}),
          title: y === "latency_us" ? "latency (µs)" : "% of copy bandwidth",
        },
        color: { field: "implementation", type: "nominal" },
      },
    },
  } as vl.TopLevelSpec;
}

/** The fastest implementation per (batch, KV length), one panel per series. */
function heatmapSpec(rows: Record<string, unknown>[]): vl.TopLevelSpec {
  return {
    title: "Fastest implementation per grid point",
    config: { ...FONT },
    data: { values: rows },
    facet: { field: "series", type: "nominal", title: null },
    columns: 3,
    resolve: { scale: { x: "independent", y: "independent" } },
    spec: {
      width: 220,
      height: 160,
      mark: "rect",
      encoding: {
        x: { field: "kv", type: "ordinal", sort: { field: "kv_len" }, title: "KV length" },
        y: {
          field: "batch_size",
          type: "ordinal",
          sort: "descending",
          title: "batch",
        },
        color: { field: "best", type: "nominal", title: "fastest" },
        tooltip: [{ field: "best" }, { field: "best_latency_ms" }],
      },
    },
  } as vl.TopLevelSpec;
}

const slug = (s: string) => s.replace(/[^A-Za-z0-9]+/g, "_").replace(/^_|_$/g, "");

/**
 * Builds the section from the loaded database, or null when the run has no judged grid point. Charts
 * are drawn per series that varies along the axis (a one-dimensional sweep gets only its own axis).
 */
export async function characterizationSection(
  conn: DuckDBConnection,
  maxRows: number,
): Promise<CharacterizationSection | null> {
  const cells = (await all(
    conn,
    `SELECT series, implementation, batch_size, kv_len, latency_ms, bytes, achieved_tbs, pct_copy_bw,
       config, head_dim, page_size, solution, sm_mhz, throttled FROM characterization_cells`,
  )) as unknown as Array<CharCell & Record<string, unknown>>;
  if (!cells.length) return null;
  for (const c of cells) {
    for (
      const k of ["batch_size", "kv_len", "latency_ms", "bytes", "achieved_tbs", "pct_copy_bw"]
    ) {
      (c as Record<string, unknown>)[k] = Number(c[k]);
    }
  }
  const best = await all(conn, "SELECT * FROM characterization_best");
  const unjudged = await all(conn, "SELECT * FROM characterization_unjudged");
  const found = findings(cells);
  const tables: Table[] = [
    {
      id: "characterization_cells",
      title: "Decode characterization: latency and achieved bandwidth per point",
      caption:
        "Every passing (implementation, grid point) cell: latency, bytes moved, achieved bandwidth and its share of the measured copy bandwidth (settings.bandwidth_tbs); the SM clock the harness logged around its measurement (the lower of before and after) and whether a throttling reason (power cap, thermal or hardware slowdown) was active.",
      columns: [
        "series",
        "batch_size",
        "kv_len",
        "implementation",
        "latency_ms",
        "achieved_tbs",
        "pct_copy_bw",
        "sm_mhz",
        "throttled",
      ],
      rows: cells,
    },
    {
      id: "characterization_best",
      title: "Decode characterization: fastest implementation per point",
      caption:
        "Per grid point, the fastest passing implementation and how much slower the next one is.",
      columns: [
        "series",
        "batch_size",
        "kv_len",
        "best",
        "best_latency_ms",
        "runner_up",
        "runner_up_slowdown",
        "implementations",
      ],
      rows: best,
    },
    {
      id: "characterization_findings",
      title: "Decode characterization: findings",
      caption:
        `Generated from the points above: knees under the model latency = max(floor, bytes / peak bandwidth) per curve (bandwidth-bound only where a curve reaches 50 % of the copy bandwidth), crossovers where one implementation's lead over another (beyond 3 %) changes sides, and latency growth with the batch.`,
      columns: ["kind", "series", "implementation", "at", "sentence"],
      rows: found as unknown as Record<string, unknown>[],
    },
    {
      id: "characterization_unjudged",
      title: "Decode characterization: points with no passing implementation",
      caption:
        "Grid points no implementation passed (or none was judged), with the statuses of the cells that failed.",
      columns: ["definition", "batch_size", "kv_len", "cells", "statuses"],
      rows: unjudged,
    },
  ];
  const charts: Chart[] = [];
  const bySeries = new Map<string, CharCell[]>();
  for (const c of cells) bySeries.set(c.series, [...(bySeries.get(c.series) ?? []), c]);
  for (const [series, rows] of [...bySeries].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const kvs = new Set(rows.map((r) => r.kv_len)), bs = new Set(rows.map((r) => r.batch_size));
    const along = (x: "kv_len" | "batch_size") =>
      rows.filter((r) =>
        rows.filter((o) => (x === "kv_len" ? o.batch_size === r.batch_size : o.kv_len === r.kv_len))
          .map((o) => o[x]).filter((v, i, a) => a.indexOf(v) === i).length >= 3
      );
    const specs: Array<[string, string, vl.TopLevelSpec]> = [];
    if (kvs.size >= 3) {
      specs.push([
        "latency_vs_kv",
        `${series}: latency vs KV length, per batch size`,
        curveSpec(`${series}: latency vs KV length`, along("kv_len"), "kv_len", "latency_us"),
      ], [
        "bandwidth_vs_kv",
        `${series}: % of copy bandwidth vs KV length, per batch size`,
        curveSpec(`${series}: % of copy bandwidth`, along("kv_len"), "kv_len", "pct_copy_bw"),
      ]);
    }
    if (bs.size >= 3) {
      specs.push([
        "latency_vs_batch",
        `${series}: latency vs batch size, per KV length`,
        curveSpec(`${series}: latency vs batch`, along("batch_size"), "batch_size", "latency_us"),
      ]);
    }
    for (const [kind, title, spec] of specs) {
      charts.push({
        id: `characterization_${slug(series)}_${kind}`,
        title,
        svg: await renderSvg(spec),
      });
    }
  }
  charts.push({
    id: "characterization_best_heatmap",
    title: "Fastest implementation per (batch, KV length), per series",
    svg: await renderSvg(heatmapSpec(best.map((b) => ({ ...b, kv: tokens(Number(b.kv_len)) })))),
  });
  return {
    tables,
    charts,
    html: sectionHtml(tables, charts, found, clocksSentence(cells), maxRows),
  };
}

const positiveMhz = (v: number) => Number.isFinite(v) && v > 0;

/**
 * What the clocks logged around the cells' measurements say, in one sentence: how many cells have a
 * reading, the range of their SM clocks, and how many saw a throttling reason.
 */
export function clocksSentence(cells: Array<Record<string, unknown>>): string {
  const mhz = cells.map((c) => Number(c.sm_mhz)).filter(positiveMhz);
  if (!mhz.length) return `No clock readings were logged for these ${cells.length} cells.`;
  const lo = Math.min(...mhz), hi = Math.max(...mhz);
  const throttled = cells.filter((c) => c.throttled === true).length;
  const unknown = cells.filter((c) => c.throttled === null || c.throttled === undefined).length;
  return `Clocks: ${mhz.length} of ${cells.length} timed cells logged their SM clock, ` +
    (lo === hi ? `all at ${lo} MHz` : `${lo}–${hi} MHz`) +
    `; ${throttled} saw a throttling reason during their measurement` +
    (unknown ? ` (${unknown} without a reading of the reasons).` : ".");
}

function sectionHtml(
  tables: Table[],
  charts: Chart[],
  found: CharCell[] | unknown[],
  clocks: string,
  maxRows: number,
) {
  const list = (found as Array<{ sentence: string; kind: string }>)
    .filter((f) => f.kind === "knee" || f.kind.startsWith("crossover"));
  const figure = (ch: Chart) =>
    `<figure class="chart" id="${html(ch.id)}">${ch.svg}<figcaption>${html(ch.title)} · ` +
    `<a href="charts/${html(ch.id)}.svg">SVG</a></figcaption></figure>`;
  const table = (t: Table) =>
    `<section id="${html(t.id)}"><h3>${html(t.title)}</h3><p class="caption">${
      html(t.caption)
    }</p>` +
    `<p class="caption">Files: <a href="tables/${html(t.id)}.csv">CSV</a> · <a href="tables/${
      html(t.id)
    }.md">Markdown</a></p>${toHtml(t, maxRows)}</section>`;
  return [
    `<p>Synthetic GQA paged-decode grid (docs/CHARACTERIZATION.md): every implementation judged at each ` +
    `(head configuration, head_dim, page size, batch size, KV length) point. Bandwidth is the bytes a call ` +
    `must move over its latency, as a share of the machine's measured copy bandwidth.</p>`,
    `<p>${html(clocks)}</p>`,
    `<h3>Findings</h3><ul class="notes">${
      list.slice(0, 40).map((f) => `<li>${html(f.sentence)}</li>`).join("")
    }</ul>` +
    (list.length > 40 ? `<p class="more">${list.length - 40} more in the findings table.</p>` : ""),
    ...charts.map(figure),
    ...tables.map(table),
  ].join("\n");
}
