/** The self-contained HTML report: summary, tables, charts, provenance and links to every trace. */
import { type Analysis, BASELINES_SEE_SUMMARY } from "./analysis.ts";
import type { Chart } from "./charts.ts";
import type { Row } from "./db.ts";
import { html, toHtml } from "./tables.ts";

/** Provenance shown in the report. */
export interface ReportProvenance {
  gitCommit: string;
  /** Which machine judged the traces and which aggregated them (empty: not said). */
  machines: string;
  toolchain: Record<string, unknown>;
  upstream: Row[];
  environments: string[];
  params: unknown;
  timings: Record<string, number>;
}

/** A trace file and where its link points. */
export interface TraceLink {
  file: string;
  href: string;
  bytes: number;
}

const CSS =
  `body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}h3{margin-top:1.5em}
table{border-collapse:collapse;font-size:12px;margin:.5em 0;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;white-space:nowrap}td.num{text-align:right}
th{background:#f3f3f3}.caption{font-size:13px;color:#444}.notes{font-size:13px}.more,.empty{font-size:12px;color:#666}
.warn{background:#fff4e5;border:1px solid #f0b429;padding:.6em 1em}.chart svg{max-width:100%;height:auto}
code{background:#f6f6f6;padding:0 3px}nav a{margin-right:1em}`;

/** A section of its own after the charts (e.g. the decode characterization), with its nav link. */
export interface ReportSection {
  id: string;
  title: string;
  html: string;
}

/** Renders index.html. Everything is inline (CSS, SVG); links point at the CSVs and trace files. */
export function renderReport(
  a: Analysis,
  charts: Chart[],
  prov: ReportProvenance,
  links: TraceLink[],
  maxRows: number,
  minCoverage = 0.8,
  page: { heading?: string; front?: string; sections?: ReportSection[] } = {},
): string {
  const c = a.counts;
  const sections = page.sections ?? [];
  const noTraces = c.traces === 0;
  const summary = [
    `<p>${c.definitions} definitions (${c.definitions_with_workloads} with workloads), ${c.workloads} workloads, ` +
    `${c.solutions} solutions, <b>${c.traces}</b> traces in ${c.trace_files} files, ${c.cells} evaluated ` +
    `(solution, workload) cells, ${c.authors} competing authors, ${c.diagnostics} input diagnostics.` +
    (c.rejected_solutions
      ? ` ${c.rejected_solutions} solutions were rejected by generate (entry point or signature) and count ` +
        "as COMPILE_ERROR on every judged workload of their definition."
      : "") +
    `</p>`,
    `<p class="caption" id="baselines"><b>Baselines</b> (every speedup in this report is against these): ${
      html(a.baselineCaption.replace(/^Baseline: /, ""))
    }</p>`,
    `<p>GPU of the evaluations: ${
      html(a.hardware.join(", ") || "none recorded")
    }. Git commit: <code>${html(prov.gitCommit)}</code>.</p>`,
  ];
  if (noTraces) {
    summary.unshift(
      `<p class="warn"><b>No traces were found.</b> The upstream stages produced no evaluation traces, so every ` +
        `table of ours below is empty and only the paper's values are shown. Run the pipeline on a machine with ` +
        `a GPU (verify and time stages) to fill them.</p>`,
    );
  }
  const lead = a.tables.find((t) => t.id === "table_c_win_at_p_leaderboard");
  if (lead && lead.rows.length) summary.push(leaderboardHeadline(lead.rows, minCoverage));
  const tableHtml = a.tables.map((t) =>
    `<section id="${html(t.id)}"><h3>${html(t.title)}</h3><p class="caption">${
      // The baselines are stated once, under the summary; the table files keep them in full.
      html(t.caption.replace(a.baselineCaption, BASELINES_SEE_SUMMARY))}</p>` +
    `<p class="caption">Files: <a href="tables/${html(t.id)}.csv">CSV</a> · <a href="tables/${
      html(t.id)
    }.md">Markdown</a></p>` +
    (t.shown
      ? toHtml({ ...t, ...t.shown }, maxRows) + `<p class="caption">${html(t.shown.note)}</p>`
      : toHtml(t, maxRows)) +
    (t.notes?.length
      ? `<ul class="notes">${
        t.notes.map((n) =>
          `<li>${
            html(
              n.replace(
                a.baselineCaption.slice("Baseline: ".length),
                "as stated under the summary (Baselines); the paper: FlashInfer for every op type, torch.matmul (cuBLAS) for GEMM.",
              ),
            )
          }</li>`
        ).join("")
      }</ul>`
      : "") +
    `</section>`
  ).join("\n");
  const chartHtml = charts.map((ch) =>
    `<figure class="chart" id="${html(ch.id)}">${ch.svg}<figcaption>${html(ch.title)} · ` +
    `<a href="charts/${html(ch.id)}.svg">SVG</a></figcaption></figure>`
  ).join("\n");
  const upstream = prov.upstream.map((r) =>
    `<tr><td>${html(String(r.stage))}</td><td>${html(String(r.cell_id))}</td><td><code>${
      html(String(r.cell_key).slice(0, 16))
    }</code></td></tr>`
  ).join("");
  const linkHtml = links.length
    ? `<ul>${
      links.map((l) => `<li><a href="${html(l.href)}">${html(l.file)}</a> (${l.bytes} bytes)</li>`)
        .join("\n")
    }</ul>`
    : "<p>No trace files.</p>";
  const timings = Object.entries(prov.timings).map(([k, v]) =>
    `<tr><td>${html(k)}</td><td class="num">${v.toFixed(2)} s</td></tr>`
  )
    .join("");
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>tracepipe report: FlashInfer-Bench reproduction</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>${CSS}</style></head>
<body>
<h1>${html(page.heading ?? "tracepipe: FlashInfer-Bench reproduction report")}</h1>
${page.front ?? ""}
<nav><a href="#summary">Summary</a><a href="#tables">Tables</a><a href="#charts">Charts</a>${
    sections.map((s) => `<a href="#${html(s.id)}">${html(s.title)}</a>`).join("")
  }<a href="#provenance">Provenance</a><a href="#traces">Traces</a></nav>
<h2 id="summary">Summary</h2>
${summary.join("\n")}
<p class="caption">Paper: FlashInfer-Bench, arXiv 2601.00227; its figure values are in data/paper-figures.json (see data/PAPER-FIGURES-SOURCE.md).</p>
<h2 id="charts">Charts</h2>
${chartHtml}
<h2 id="tables">Tables</h2>
${tableHtml}${
    // Nothing at all without sections, so reports without them keep their bytes.
    sections.map((s) => `\n<h2 id="${html(s.id)}">${html(s.title)}</h2>\n${s.html}`).join("")}
<h2 id="provenance">Provenance</h2>
${prov.machines ? `<p>${html(prov.machines)}</p>\n` : ""}<p>Git commit: <code>${
    html(prov.gitCommit)
  }</code></p>
<p>Evaluation environments (first line of each trace file): ${
    prov.environments.length
      ? prov.environments.map((e) => `<code>${html(e)}</code>`).join(" ")
      : "none"
  }</p>
${
    Object.keys(prov.toolchain).length
      ? `<h3>Toolchain of this aggregate run</h3><pre>${
        html(JSON.stringify(prov.toolchain, null, 2))
      }</pre>`
      : ""
  }
<h3>Upstream cells</h3><table><thead><tr><th>stage</th><th>cell</th><th>key</th></tr></thead><tbody>${upstream}</tbody></table>
<h3>Params</h3><pre>${html(JSON.stringify(prov.params, null, 2))}</pre>
${timings ? `<h3>Timings</h3><table><tbody>${timings}</tbody></table>` : ""}
<h2 id="traces">Trace files</h2>
${linkHtml}
</body></html>
`;
}

/**
 * The leaderboard's headline: the first ranked author with its coverage, and the authors left
 * unranked for their coverage, each with theirs, so a high win rate over few workloads does not read
 * as a lead.
 */
export function leaderboardHeadline(rows: Row[], minCoverage: number): string {
  const ranked = rows.filter((r) => r.ranked === true);
  const others = rows.filter((r) => r.ranked !== true);
  const pct = `${Math.round(minCoverage * 100)} %`;
  const parts: string[] = [];
  if (ranked.length) {
    const top = ranked[0];
    parts.push(
      `Leaderboard (win@${top.p}, ranked among the ${ranked.length} author${
        ranked.length === 1 ? "" : "s"
      } whose coverage is at least ${pct} of the best-covered author's): <b>${
        html(String(top.author))
      }</b> ranks first with ${top.win_pct}% (${top.n_wins}/${top.n_total} workloads won; coverage ${
        html(String(top.coverage))
      }).`,
    );
  }
  if (others.length) {
    parts.push(
      `Not ranked, coverage too low to compare: ${
        others.map((r) =>
          `${html(String(r.author))} (coverage ${
            html(String(r.coverage))
          }, win@${r.p} ${r.win_pct}%)`
        ).join("; ")
      }.`,
    );
  }
  return `<p>${parts.join(" ")}</p>`;
}
