/** Table values as plain rows, and their CSV / Markdown / HTML renderings. */
import * as aq from "arquero";
import type { Row } from "./db.ts";

/** A finished table: what it answers, its caption, and its rows. */
export interface Table {
  id: string;
  title: string;
  /** The question the table answers, and how it is computed. */
  caption: string;
  columns: string[];
  rows: Row[];
  /** Notes shown under the table (e.g. the differences to the paper). */
  notes?: string[];
  /**
   * What the report's page shows in place of the rows, when the long form (kept in the CSV and
   * Markdown files) reads badly on a page: e.g. Table B as the paper's grid of a few p columns.
   */
  shown?: { columns: string[]; rows: Row[]; note: string };
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (Number.isNaN(v)) return "NaN";
    if (!Number.isFinite(v)) return v > 0 ? "Infinity" : "-Infinity";
    return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6)));
  }
  if (Array.isArray(v)) return v.map(cell).join(" ");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** RFC 4180 CSV with a header row. */
export function toCsv(t: Table): string {
  const q = (s: string) => /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  const lines = [t.columns.map(q).join(",")];
  for (const r of t.rows) lines.push(t.columns.map((c) => q(cell(r[c]))).join(","));
  return lines.join("\n") + "\n";
}

/** A GitHub-flavoured Markdown table with the title and caption above it. */
export function toMarkdown(t: Table): string {
  const esc = (s: string) => s.replaceAll("|", "\\|").replaceAll("\n", " ");
  const out = [`## ${t.title}`, "", t.caption, ""];
  if (t.rows.length === 0) out.push("_(no rows)_", "");
  else {
    out.push(`| ${t.columns.map(esc).join(" | ")} |`);
    out.push(`|${t.columns.map(() => "---").join("|")}|`);
    for (const r of t.rows) out.push(`| ${t.columns.map((c) => esc(cell(r[c]))).join(" | ")} |`);
    out.push("");
  }
  for (const n of t.notes ?? []) out.push(`- ${n}`);
  return out.join("\n") + "\n";
}

/** Escapes text for HTML. */
export const html = (s: string) =>
  s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll(
    '"',
    "&quot;",
  );

/** An HTML table (at most `maxRows` rows; the CSV link carries the rest). */
export function toHtml(t: Table, maxRows: number): string {
  const head = t.columns.map((c) => `<th>${html(c)}</th>`).join("");
  const body = t.rows.slice(0, maxRows).map((r) =>
    `<tr>${
      t.columns.map((c) =>
        `<td${typeof r[c] === "number" ? ' class="num"' : ""}>${html(cell(r[c]))}</td>`
      ).join("")
    }</tr>`
  ).join("\n");
  const more = t.rows.length > maxRows
    ? `<p class="more">Showing ${maxRows} of ${t.rows.length} rows; the CSV has all of them.</p>`
    : "";
  const empty = t.rows.length === 0 ? `<p class="empty">(no rows)</p>` : "";
  return `<table id="tbl-${
    html(t.id)
  }"><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>${empty}${more}`;
}

/**
 * Pivots a long table to a wide one with arquero (clearer than a dynamic SQL PIVOT): one row
 * per `keys`, one column per distinct value of `column`, filled from `value` (missing → 0).
 */
export function pivot(
  rows: Row[],
  keys: string[],
  column: string,
  value: string,
): { columns: string[]; rows: Row[] } {
  if (rows.length === 0) return { columns: keys, rows: [] };
  const wide = aq.from(rows).groupby(...keys).pivot(column, value);
  const valueCols = wide.columnNames().filter((c: string) => !keys.includes(c)).sort();
  const out = (wide.objects() as Array<Record<string, unknown>>).map((r) => {
    const o: Row = {};
    for (const k of keys) o[k] = r[k];
    for (const c of valueCols) o[c] = r[c] ?? 0;
    return o;
  });
  return { columns: [...keys, ...valueCols], rows: out };
}
