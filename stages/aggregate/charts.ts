/**
 * The report's charts: Vega-Lite specs compiled and rendered to SVG on the server with vega's
 * View.toSVG (no browser, no canvas). Layouts follow the paper: Fig. 5 (leaderboard curves),
 * Fig. 6 (fast_p grid, op × language) and Fig. 7 (correctness bars).
 */
import { renderSvg } from "../../pipeline/lib/vega.ts";
import type * as vl from "vega-lite";
import type { Row } from "./db.ts";
import type { PaperFigures } from "./analysis.ts";

/** One rendered chart. */
export interface Chart {
  id: string;
  title: string;
  svg: string;
}

const FONT = { font: "Helvetica, Arial, sans-serif" };

function emptyNote(title: string): vl.TopLevelSpec {
  return {
    title,
    width: 420,
    height: 60,
    config: { ...FONT, view: { stroke: null } },
    data: { values: [{ t: "No traces: nothing to plot." }] },
    mark: { type: "text", fontSize: 14 },
    encoding: { text: { field: "t", type: "nominal" } },
  } as vl.TopLevelSpec;
}

function fastPSpec(title: string, rows: Row[], colorTitle: string): vl.TopLevelSpec {
  return {
    title,
    config: { ...FONT },
    data: { values: rows },
    facet: {
      row: { field: "panel", type: "nominal", title: null },
      column: { field: "language", type: "nominal", title: null },
    },
    resolve: { scale: { x: "independent" } },
    spec: {
      width: 260,
      height: 160,
      mark: { type: "line", interpolate: "step-after", point: { size: 12 } },
      encoding: {
        x: { field: "p", type: "quantitative", title: "p (speedup over baseline)" },
        y: { field: "fast_p", type: "quantitative", title: "fast_p", scale: { domain: [0, 1] } },
        color: { field: "who", type: "nominal", title: colorTitle },
      },
    },
  } as vl.TopLevelSpec;
}

/** Builds every chart of the report. */
export async function buildCharts(
  fastP: Row[],
  winCurve: Row[],
  correctness: Row[],
  paper: PaperFigures,
  winP: number,
): Promise<Chart[]> {
  const charts: Chart[] = [];
  const fig6 = fastP.filter((r) => r.fast_p !== null).map((r) => ({
    panel: r.panel,
    language: r.language,
    who: r.author,
    p: r.p,
    fast_p: r.fast_p,
  }));
  charts.push({
    id: "fig6_fast_p_ours",
    title: "fast_p per panel × language (ours; layout of the paper's Fig. 6)",
    svg: await renderSvg(
      fig6.length ? fastPSpec("fast_p (ours)", fig6, "author") : emptyNote("fast_p (ours)"),
    ),
  });
  const paperRows: Row[] = [];
  for (const [panel, langs] of Object.entries(paper.table_b_fast_p.values)) {
    for (const [language, models] of Object.entries(langs)) {
      for (const [who, curve] of Object.entries(models)) {
        for (const [p, v] of Object.entries(curve)) {
          paperRows.push({ panel, language, who, p: Number(p), fast_p: v });
        }
      }
    }
  }
  charts.push({
    id: "fig6_fast_p_paper",
    title: "fast_p in the paper (Fig. 6 curve data, B200)",
    svg: await renderSvg(fastPSpec("fast_p (paper, Fig. 6)", paperRows, "model")),
  });

  const curve = winCurve.map((r) => ({ author: r.author, p: r.p, win: r.win }));
  charts.push({
    id: "fig5_win_at_p_ours",
    title: "win@p leaderboard curves (ours; like the paper's Fig. 5)",
    svg: await renderSvg(
      curve.length
        ? {
          title: `win@p (ours); headline p = ${winP}`,
          config: { ...FONT },
          width: 520,
          height: 260,
          layer: [
            {
              data: { values: curve },
              mark: { type: "line", interpolate: "step-after" },
              encoding: {
                x: { field: "p", type: "quantitative", title: "p" },
                y: {
                  field: "win",
                  type: "quantitative",
                  title: "win@p",
                  axis: { format: "%" },
                  scale: { domain: [0, 1] },
                },
                color: { field: "author", type: "nominal" },
              },
            },
            {
              data: { values: [{ p: winP }] },
              mark: { type: "rule", strokeDash: [4, 4], color: "#888" },
              encoding: { x: { field: "p", type: "quantitative" } },
            },
          ],
        } as vl.TopLevelSpec
        : emptyNote("win@p (ours)"),
    ),
  });

  const bars: Row[] = [];
  for (const [model, v] of Object.entries(paper.table_a_correctness_by_language.values)) {
    for (const [language, pct] of Object.entries(v)) {
      bars.push({ source: "paper (Fig. 7)", who: model, language, pct });
    }
  }
  for (const r of correctness) {
    bars.push({ source: "ours", who: r.author, language: r.language, pct: r.correctness_pct });
  }
  charts.push({
    id: "fig7_correctness_ours_vs_paper",
    title: "Correctness by language × author, ours beside the paper (Fig. 7)",
    svg: await renderSvg({
      title: "Correctness rate by language",
      config: { ...FONT },
      data: { values: bars },
      facet: { column: { field: "source", type: "nominal", title: null } },
      resolve: { scale: { x: "independent" } },
      spec: {
        width: 260,
        height: 200,
        mark: "bar",
        encoding: {
          x: { field: "who", type: "nominal", title: null, axis: { labelAngle: -30 } },
          xOffset: { field: "language", type: "nominal" },
          y: {
            field: "pct",
            type: "quantitative",
            title: "correct %",
            scale: { domain: [0, 100] },
          },
          color: { field: "language", type: "nominal" },
        },
      },
    } as vl.TopLevelSpec),
  });
  return charts;
}
