/**
 * `tp claims` on fixture runs (a claim passes, one fails, one cannot run; the exit code follows the
 * FAILs) and on the shipped run (the paper's Table A/B/C findings, apply(), harness fidelity and
 * the kernels' roofline claims are all printed); bad input is one line and exit code 2.
 */
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { claimsCommand } from "./command.ts";
import { FIXTURE_CLAIMS, writeFixtureRun } from "../../stages/aggregate/testdata/fixture_run.ts";

/** Runs `f` with console.log/error captured. */
async function captured(f: () => Promise<number>) {
  const out: string[] = [], err: string[] = [];
  const [log, error] = [console.log, console.error];
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    return { code: await f(), out, err };
  } finally {
    [console.log, console.error] = [log, error];
  }
}

function fixture(claims: unknown, gpu: string | null) {
  const dir = mkdtempSync(join(tmpdir(), "tp-claims-"));
  const results = join(dir, "results");
  mkdirSync(results);
  writeFileSync(join(dir, "claims.json"), JSON.stringify(claims));
  const run = writeFixtureRun(dir, "fixture-run", { gpu });
  return { dir, results, run, claims: join(dir, "claims.json") };
}

const line = (out: string[], id: string) => out.find((l) => l.split(/\s{2,}/)[1] === id) ?? "";

Deno.test("tp claims on a fixture run: one line per claim, ours beside the paper's; exit 1 when one FAILs", async () => {
  const f = fixture(FIXTURE_CLAIMS, null);
  try {
    const r = await captured(() =>
      claimsCommand(["--results", f.results, "--run", f.run, "--claims", f.claims])
    );
    assertEquals(r.code, 1, r.out.join("\n"));
    assertMatch(r.out[0], /^claims on run fixture-run \(CPU; 1 run loaded: fixture-run\)$/);
    assertMatch(
      line(r.out, "t.pass"),
      /^PASS +t\.pass +ours 66\.7 %, paper 70 %, expected 70 ± 5 %$/,
    );
    assertMatch(line(r.out, "t.fail"), /^FAIL +t\.fail +ours 66\.7 %/);
    assertMatch(line(r.out, "t.gpu"), /^NOT RUN +t\.gpu .* — needs a GPU run$/);
    assertEquals(r.out.at(-1), "1 PASS, 1 FAIL, 3 NOT RUN");
  } finally {
    rmSync(f.dir, { recursive: true, force: true });
  }
});

Deno.test("tp claims exits 0 when nothing that ran FAILed, NOT RUN included", async () => {
  const claims = structuredClone(FIXTURE_CLAIMS);
  claims.claims = claims.claims.filter((c) => (c as { id: string }).id !== "t.fail");
  const f = fixture(claims, null);
  try {
    const r = await captured(() =>
      claimsCommand(["--results", f.results, "--run", f.run, "--claims", f.claims])
    );
    assertEquals(r.code, 0, r.out.join("\n"));
    assertEquals(r.out.at(-1), "1 PASS, 0 FAIL, 3 NOT RUN");
  } finally {
    rmSync(f.dir, { recursive: true, force: true });
  }
});

Deno.test("tp claims: a broken query or a missing run folder is one line and exit code 2", async () => {
  const claims = structuredClone(FIXTURE_CLAIMS);
  (claims.claims[0] as { sql: string }).sql = "SELECT nonsense FROM nowhere";
  const f = fixture(claims, "FakeGPU");
  try {
    const r = await captured(() =>
      claimsCommand(["--results", f.results, "--run", f.run, "--claims", f.claims])
    );
    assertEquals(r.code, 2);
    assertMatch(r.err.join("\n"), /^error: claims\.json: t\.pass: .*nowhere/);
    const gone = await captured(() => claimsCommand(["--run", join(f.dir, "nope")]));
    assertEquals(gone.code, 2);
    assertEquals(gone.err, [
      `error: --run ${join(f.dir, "nope")}: no run.json there (a run folder: run.json and cells/)`,
    ]);
  } finally {
    rmSync(f.dir, { recursive: true, force: true });
  }
});

Deno.test("tp claims on the shipped H100 runs decides the paper's tables, apply(), fidelity, rooflines and repeatability", async () => {
  const r = await captured(() => claimsCommand([]));
  // The newest shipped GPU run decides; the earlier one is loaded for the cross-run claims.
  assertMatch(
    r.out[0],
    /^claims on run h100-2026-12-08 \(NVIDIA H100 80GB HBM3; 4 runs loaded: h100-2026-12-06, h100-2026-12-07, h100-2026-12-07-warm, h100-2026-12-08\)/,
  );
  const status = (id: string) => line(r.out, id).split(/\s{2,}/)[0];
  // Table A and the leaderboard's correctness: our H100 verdicts beside the paper's.
  assertEquals(status("paper.table_a.gpt5_cuda"), "PASS");
  assertMatch(line(r.out, "paper.table_a.gpt5_cuda"), /ours 83\.3 %, paper 83 %/);
  assertEquals(status("paper.table_c.gpt5_correctness"), "PASS");
  // Table B's GEMM panel (cuBLAS in both) runs; the FlashInfer-relative findings cannot.
  assert(["PASS", "FAIL"].includes(status("paper.table_b.gemm_under_half")));
  assertMatch(line(r.out, "paper.table_b.decode_under_half"), /NOT RUN .*FlashInfer absent/);
  assertMatch(line(r.out, "paper.table_c.low_win_rates"), /NOT RUN .*FlashInfer absent/);
  // The run records apply()'s CUDA-graph section (where the paper measured its overhead): its own
  // record decides the overhead claim (0.11 %), and the line names no other run.
  assertMatch(
    line(r.out, "paper.apply.overhead"),
    /^PASS +paper\.apply\.overhead +ours 0\.11(?!.*recorded in run)/,
  );
  assertMatch(
    line(r.out, "paper.apply.additivity"),
    /^(PASS|FAIL) +paper\.apply\.additivity +ours \d(?!.*recorded in run)/,
  );
  assertEquals(status("project.fidelity.known_correct_pass"), "PASS");
  assertEquals(status("project.fidelity.outside_verdicts"), "PASS");
  assertMatch(line(r.out, "project.fidelity.copy_bandwidth"), /NOT RUN .*needs a GPU/);
  assertMatch(
    line(r.out, "project.roofline.gqa_decode"),
    /NOT RUN .*no decode workload that large/,
  );
  assertMatch(line(r.out, "project.roofline.rmsnorm"), /NOT RUN .*batch 8192/);
  // Two runs of the same cells on the same GPU model: repeatability is decided on their join.
  assertMatch(
    line(r.out, "project.repeatability"),
    /^(PASS|FAIL) +project\.repeatability +ours \d/,
  );
  // The tail check charged no honest cell in that run (2 in h100-2026-12-07-warm, 19 in the run
  // before it): PASS; the earliest run kept no timing.json, so there it is NOT RUN.
  assertMatch(
    line(r.out, "project.fidelity.tail_check_honest"),
    /^PASS +project\.fidelity\.tail_check_honest +ours 0 cells/,
  );
  const warm = await captured(() => claimsCommand(["--on", "h100-2026-12-07-warm"]));
  assertMatch(
    line(warm.out, "project.fidelity.tail_check_honest"),
    /^FAIL +project\.fidelity\.tail_check_honest +ours 2 cells/,
  );
  // The run's CUDA builds were warm: it decides the throughput claim (72.5 cells per GPU-minute).
  assertMatch(line(r.out, "project.throughput"), /^PASS +project\.throughput +ours 72\.5/);
  assertEquals(r.err, []);
  assertEquals(r.code, r.out.some((l) => l.startsWith("FAIL")) ? 1 : 0);

  // --on the earlier run: apply(), measured on an H100 and recorded there, is decided both ways.
  const earlier = await captured(() => claimsCommand(["--on", "h100-2026-12-06"]));
  assertMatch(earlier.out[0], /^claims on run h100-2026-12-06 /);
  assertMatch(
    line(earlier.out, "paper.apply.overhead"),
    /^(PASS|FAIL) +paper\.apply\.overhead +ours \d/,
  );
  assertMatch(
    line(earlier.out, "paper.apply.additivity"),
    /^(PASS|FAIL) +paper\.apply\.additivity +ours \d/,
  );
  assertMatch(line(earlier.out, "project.throughput"), /^PASS +project\.throughput +ours 86\.7/);
  assertMatch(
    line(earlier.out, "project.fidelity.tail_check_honest"),
    /^NOT RUN .* — no timing\.json in this run/,
  );
});
