/**
 * The report's first screen: the claims table, then one row per run (shipped or judged here) with
 * its GPU, commit, counts and what it could not judge, each linking to that run's own report.
 */
import type { ClaimResult } from "./claims.ts";
import { html, type Table } from "./tables.ts";
import type { Row } from "./db.ts";

/** One run as the first screen lists it. */
export interface RunLine {
  id: string;
  /** "shipped" (results/) or "this machine". */
  kind: string;
  title: string;
  hardware: string;
  date: string | null;
  commit: string | null;
  counts: Record<string, number>;
  /** Solutions with no trace in this run, by language (what it could not judge). */
  notJudged: Row[];
  /** Link to the run's report, relative to the first screen. */
  href: string;
}

/** The runs as a table (runs.csv and the first screen). */
export function runsTable(runs: RunLine[]): Table {
  return {
    id: "runs",
    title: "Runs in this report",
    caption:
      "Each run is reported on its own (no table mixes machines): the shipped runs of results/ and what this machine judged, if anything. no_trace: solutions with no trace in the run (not selected by the profile, or, judged on a CPU, CUDA and Triton solutions, which need a GPU).",
    columns: [
      "run",
      "kind",
      "hardware",
      "date",
      "commit",
      "traces",
      "cells",
      "solutions",
      "workloads",
      "no_trace",
    ],
    rows: runs.map((r) => ({
      run: r.id,
      kind: r.kind,
      hardware: r.hardware,
      date: r.date,
      commit: r.commit ? r.commit.slice(0, 12) : null,
      traces: r.counts.traces ?? 0,
      cells: r.counts.cells ?? 0,
      solutions: r.counts.solutions ?? 0,
      workloads: r.counts.workloads ?? 0,
      no_trace: notJudgedText(r.notJudged),
    })),
  };
}

/** "12 cuda, 10 triton solutions" (no trace in this run), or "". */
export function notJudgedText(rows: Row[]): string {
  const parts = rows.filter((r) => Number(r.n) > 0).map((r) => `${r.n} ${r.language}`);
  return parts.length ? `${parts.join(", ")} solutions` : "";
}

const STATUS_STYLE: Record<string, string> = {
  PASS: "background:#e6f4ea",
  FAIL: "background:#fde7e9",
  "NOT RUN": "background:#f3f3f3",
};

/** The first screen's HTML: claims (decided on `claimsRun`), then the runs with their links. */
export function renderFront(
  claims: ClaimResult[] | null,
  claimsRun: RunLine | null,
  runs: RunLine[],
  claimsNote: string,
): string {
  const out: string[] = [];
  out.push(`<section id="claims"><h2>Claims</h2>`);
  if (claims && claimsRun) {
    const counts = ["PASS", "FAIL", "NOT RUN"].map((s) =>
      `${claims.filter((c) => c.status === s).length} ${s}`
    );
    out.push(
      `<p>Decided on run <b>${html(claimsRun.id)}</b> (${html(claimsRun.hardware)}): ${
        counts.join(", ")
      }. ${html(claimsNote)} The same table: <code>deno task tp claims</code>; ` +
        `each claim's query and check are in <code>claims.json</code>; ` +
        `<a href="claims.csv">CSV</a> · <a href="claims.md">Markdown</a>.</p>`,
    );
    out.push(
      `<table><thead><tr>${
        ["status", "claim (hover: where)", "ours", "paper", "expected", "n", "why not run / claim"]
          .map((h) => `<th>${h}</th>`).join("")
      }</tr></thead><tbody>`,
    );
    for (const c of claims) {
      const num = (v: number | null) =>
        v === null ? "" : Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));
      out.push(
        `<tr><td style="${STATUS_STYLE[c.status]}"><b>${c.status}</b></td><td><code title="${
          html(c.where)
        }">${html(c.id)}</code></td><td class="num">${num(c.ours)}</td><td class="num">${
          num(c.paper)
        }</td><td>${html(c.expected)}</td><td class="num">${
          c.n ?? ""
        }</td><td style="white-space:normal;min-width:28em">${
          html(
            c.status === "NOT RUN" ? c.why : c.recordedIn ? `${c.claim} (${c.why})` : c.claim,
          )
        }</td></tr>`,
      );
    }
    out.push(`</tbody></table>`);
  } else {
    out.push(`<p>No claims: ${html(claimsNote)}</p>`);
  }
  out.push(`</section>`);
  const t = runsTable(runs);
  out.push(`<section id="runs"><h2>Runs</h2><p class="caption">${html(t.caption)}</p>`);
  out.push(
    `<table><thead><tr>${t.columns.map((c) => `<th>${c}</th>`).join("")}</tr></thead><tbody>`,
  );
  runs.forEach((r, i) => {
    const row = t.rows[i];
    out.push(
      `<tr>${
        t.columns.map((c) =>
          c === "run"
            ? `<td><a href="${html(r.href)}">${html(r.id)}</a></td>`
            : `<td>${html(String(row[c] ?? ""))}</td>`
        ).join("")
      }</tr>`,
    );
  });
  out.push(`</tbody></table>`);
  for (const r of runs) {
    out.push(
      `<p class="caption"><b>${html(r.id)}</b> (${html(r.kind)}): ${html(r.title)}.${
        r.notJudged.length && notJudgedText(r.notJudged)
          ? ` Solutions with no trace in this run: ${html(notJudgedText(r.notJudged))}.`
          : ""
      }</p>`,
    );
  }
  out.push(`</section>`);
  return out.join("\n");
}

/** A table of every run's rows, with the run and its hardware first. */
export function allRunsTable(id: string, perRun: { run: RunLine; table: Table }[]): Table {
  const first = perRun[0].table;
  // Runs may differ in columns (Table B's p values follow the data): their union, in order.
  const columns = [...new Set(perRun.flatMap((p) => p.table.columns))];
  return {
    id,
    title: `${first.title} (every run)`,
    caption: `${first.caption} One row per run and row of that run's table.`,
    columns: ["run", "hardware", ...columns],
    rows: perRun.flatMap(({ run, table }) =>
      table.rows.map((r) => ({ run: run.id, hardware: run.hardware, ...r }))
    ),
  };
}
