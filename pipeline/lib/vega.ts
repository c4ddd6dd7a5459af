/** Vega-Lite specs rendered to SVG on the server (no browser, no canvas). */
import type * as vl from "vega-lite";

/**
 * Renders a Vega-Lite spec to an SVG string. vega and vega-lite load on the first call, not with
 * the module: the judging stages share the CLI with the chart-drawing ones, and a GPU machine that
 * carries only what judging needs (docs/GPU.md) has no vega packages to resolve.
 */
export async function renderSvg(spec: vl.TopLevelSpec): Promise<string> {
  const [vega, vegaLite] = await Promise.all([import("vega"), import("vega-lite")]);
  const compiled = vegaLite.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
