/**
 * Artifact evaluation's fast path (what CI runs of `deno task ae:kick`): the shipped H100 run,
 * re-aggregated, gives the committed report byte for byte; an ordinary `reproduce` on a machine
 * without a GPU reports the shipped runs beside its own CPU judgements, labelled, publishes into
 * the git-ignored reports/latest/, and changes no shipped file.
 */
import { assert, assertEquals, assertMatch } from "./assert.ts";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT, treeDigest } from "../pipeline/engine/mod.ts";
import { compareReport } from "../pipeline/claims/mod.ts";
import { AggregateParams, buildShippedReport, PUBLISH_DIR } from "../stages/aggregate/mod.ts";
import { reportHere } from "./report.ts";
import { writeFixtureRun } from "../stages/aggregate/testdata/fixture_run.ts";

/** The newest shipped GPU run: the claims are decided on it. */
const SHIPPED = "h100-2026-12-08";
/** The run before it, shown beside it. */
const EARLIER = "h100-2026-12-06";

Deno.test("the committed report is the shipped runs re-aggregated, byte for byte", async () => {
  const out = mkdtempSync(join(tmpdir(), "artifact-report-"));
  try {
    await buildShippedReport({
      root: REPO_ROOT,
      outDir: out,
      params: AggregateParams.parse({}),
      log: () => {},
    });
    const diffs = compareReport(out, join(REPO_ROOT, "reports"));
    assert(
      diffs.length === 0,
      `reports/ no longer matches results/ re-aggregated (${diffs.length} files); if the change is intended, rebuild it with \`deno task tp report --ship\` and commit it:\n${
        diffs.slice(0, 20).join("\n")
      }`,
    );
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

/** A repository root with the shipped runs, claims, the paper's figures and the committed report. */
function scratchRoot(): string {
  const root = mkdtempSync(join(tmpdir(), "artifact-root-"));
  for (const p of ["results", "claims.json", "data/paper-figures.json", "data/corpus", "reports"]) {
    mkdirSync(join(root, p, ".."), { recursive: true });
    cpSync(join(REPO_ROOT, p), join(root, p), { recursive: true });
  }
  return root;
}

Deno.test("reproduce on a CPU: the shipped H100 run beside this machine's CPU judgements, nothing shipped touched", async () => {
  const root = scratchRoot();
  try {
    const before = {
      results: treeDigest(join(root, "results")),
      reports: treeDigest(join(root, "reports")),
    };
    // This machine's judged cells: the fixture TraceSet as judged on a CPU.
    const cpu = writeFixtureRun(join(root, "scratch"), "cpu", {
      gpu: null,
      hardware: "cpu:x86_64",
    });
    const plan = await reportHere(root, cpu, []);
    assert(plan.inputs[`results/${SHIPPED}`], "the shipped run is an input of the report");
    // Nothing shipped changed: the runs and the committed report are byte-identical.
    assertEquals(treeDigest(join(root, "results")), before.results);
    assertEquals(
      treeDigest(join(root, "reports", "tables")),
      treeDigest(join(REPO_ROOT, "reports", "tables")),
    );
    const latest = join(root, PUBLISH_DIR);
    assert(existsSync(join(latest, "index.html")), "published into reports/latest/");
    const committedFiles = (dir: string) =>
      [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n !== "latest").sort();
    assertEquals(committedFiles(join(root, "reports")), committedFiles(join(REPO_ROOT, "reports")));
    void before.reports;

    const front = readFileSync(join(latest, "index.html"), "utf8");
    // The first screen: the claims, decided on the shipped H100 run since this machine has no GPU.
    assertMatch(front, /<h2>Claims<\/h2>/);
    assertMatch(front, new RegExp(`Decided on run <b>${SHIPPED}</b> \\(NVIDIA H100 80GB HBM3\\)`));
    assertMatch(front, /paper\.table_a\.gpt5_cuda/);
    // The runs: the shipped one with its GPU, commit and counts; this machine's labelled as such.
    assertMatch(
      front,
      new RegExp(
        `<a href="runs/${SHIPPED}/index.html">${SHIPPED}</a></td><td>shipped</td><td>NVIDIA H100 80GB HBM3</td><td>2026-12-08</td><td>869f56ebafef</td><td>381</td><td>381</td><td>472</td><td>2647</td>`,
      ),
    );
    assertMatch(
      front,
      new RegExp(
        `<a href="runs/${EARLIER}/index.html">${EARLIER}</a></td><td>shipped</td><td>NVIDIA H100 80GB HBM3</td><td>2026-12-06</td><td>05126f885eaa</td><td>345</td>`,
      ),
    );
    assertMatch(
      front,
      /<a href="#summary">this-machine<\/a><\/td><td>this machine<\/td><td>cpu:x86_64<\/td>/,
    );
    assertMatch(front, /run this-machine \(this machine; no GPU: CPU judgements\)/);
    // The shipped run's own report: its tables, charts and provenance, its traces linked in results/.
    const shipped = readFileSync(join(latest, "runs", SHIPPED, "index.html"), "utf8");
    assertMatch(shipped, /<b>381<\/b> traces in 381 files/);
    assertMatch(shipped, /Git commit: <code>869f56ebafefab3eca680c583c29e3b11741f37d<\/code>/);
    assertMatch(shipped, /NVIDIA H100 80GB HBM3/);
    assertMatch(shipped, /<svg/);
    assertMatch(shipped, new RegExp(`href="../../../../results/${SHIPPED}/cells/time/`));
    for (
      const f of [
        "tables/table_a_correctness_by_language_author.csv",
        "charts/fig6_fast_p_ours.svg",
        "cells.csv",
      ]
    ) {
      assert(existsSync(join(latest, "runs", SHIPPED, f)), f);
    }
    assertEquals(
      readFileSync(join(latest, "runs", SHIPPED, "tables", "table_b_fast_p.csv"), "utf8"),
      readFileSync(join(REPO_ROOT, "reports", "tables", "table_b_fast_p.csv"), "utf8"),
    );
    // Every table of every run, each row labelled with its run and hardware.
    const all = readFileSync(
      join(latest, "all-runs", "table_a_correctness_by_language_author.csv"),
      "utf8",
    );
    assertMatch(all, /^run,hardware,author,language,/);
    assertMatch(all, new RegExp(`\\n${SHIPPED},NVIDIA H100 80GB HBM3,gpt-5,cuda,`));
    assertMatch(all, new RegExp(`\\n${EARLIER},NVIDIA H100 80GB HBM3,gpt-5,cuda,`));
    assertMatch(all, /\nthis-machine,cpu:x86_64,alice,cuda,/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
