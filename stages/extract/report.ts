/**
 * extract's per-model report: the summary a model cell returns, its Markdown rendering and the
 * Vega-Lite chart of the axis distributions that the Markdown embeds.
 */
import type { TopLevelSpec } from "vega-lite";
import type { Family } from "./families.ts";

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

/** A group of events that matches no definition: the definition it would need, and its weight. */
export interface MissingDefinition {
  name: string;
  family: Family;
  consts: Record<string, number>;
  events: number;
  timeShare: number;
}

/** extract's summary of one model cell. */
export interface ExtractSummary {
  model: string;
  workloads: number;
  definitions: DefinitionReport[];
  missing: MissingDefinition[];
  unsupportedConstraints: string[];
  dumpWorkloads: number;
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

const percent = (x: number) => `${(100 * x).toFixed(1)}%`;

/** Markdown workload report: per definition, axis distributions and time shares; then the gaps. */
export function renderReport(s: ExtractSummary): string {
  const lines = [
    `# Workload report: ${s.model}`,
    "",
    `${s.workloads} workloads (${s.dumpWorkloads} from engine dumps).`,
    "",
    ...definitionTable(s.definitions),
    ...axisTable(s.definitions),
    ...missingSection(s.missing),
  ];
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

/** The table of events, shapes and time shares per definition. */
function definitionTable(defs: DefinitionReport[]): string[] {
  const lines = [
    "| definition | events | distinct shapes | chosen | time share of model | chosen shapes' share of its time |",
    "|---|---:|---:|---:|---:|---:|",
  ];
  for (const d of defs) {
    lines.push(
      `| ${d.definition} | ${d.events} | ${d.distinctShapes} | ${d.chosen} | ${
        percent(d.timeShareOfModel)
      } | ${percent(d.chosenTimeShare)} |`,
    );
  }
  return lines;
}

/** The axis-distribution section: the chart, then one table row per (definition, axis). */
function axisTable(defs: DefinitionReport[]): string[] {
  const lines = [
    "",
    "## Axis distributions (events, weighted by count; chosen range)",
    "",
    "![axis distributions](report-axes.svg)",
    "",
    "| definition | axis | min | p10 | p50 | p90 | max | chosen min..max |",
    "|---|---|---:|---:|---:|---:|---:|---|",
  ];
  for (const d of defs) {
    for (const a of d.axes) {
      lines.push(
        `| ${d.definition} | ${a.axis} | ${a.min} | ${a.p10} | ${a.p50} | ${a.p90} | ${a.max} | ${a.chosenMin}..${a.chosenMax} |`,
      );
    }
  }
  return lines;
}

/** The section on events that match no definition ("None." when every event matched). */
function missingSection(missing: MissingDefinition[]): string[] {
  const lines = ["", "## Events that match no definition", ""];
  if (!missing.length) return [...lines, "None."];
  lines.push(
    "| needed definition | family | constant axes | events | time share |",
    "|---|---|---|---:|---:|",
  );
  for (const m of missing) {
    lines.push(
      `| ${m.name} | ${m.family} | ${JSON.stringify(m.consts)} | ${m.events} | ${
        percent(m.timeShare)
      } |`,
    );
  }
  return lines;
}
