/**
 * Claims decided on fixture runs (tests/fixtures/aggregate/basic as a run folder): a claim that
 * passes, one that fails, one whose requirement the run does not meet, one the data cannot decide,
 * a cross-run one with one run and with two; and claims files that cannot be used.
 */
import { assert, assertEquals, assertMatch, assertThrows } from "../../tests/assert.ts";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { claimsOnRuns } from "./report_runs.ts";
import { ClaimsError, loadClaims } from "./claims.ts";
import { AggregateParams } from "./params.ts";
import { readRunFolder } from "./runs.ts";
import { FIXTURE_CLAIMS, writeFixtureRun } from "./testdata/fixture_run.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

async function decide(runs: { id: string; gpu: string | null; scale?: number }[], on?: string) {
  const dir = mkdtempSync(join(tmpdir(), "claims-"));
  try {
    const claimsPath = join(dir, "claims.json");
    writeFileSync(claimsPath, JSON.stringify(FIXTURE_CLAIMS));
    const folders = runs.map((r) =>
      readRunFolder(writeFixtureRun(dir, r.id, { gpu: r.gpu, scale: r.scale }))
    );
    const { results } = await claimsOnRuns({
      root: ROOT,
      runs: folders,
      on,
      claimsPath,
      params: AggregateParams.parse({}),
    });
    return Object.fromEntries(results.map((r) => [r.id, r]));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

Deno.test("claims on a GPU fixture run: PASS, FAIL, and NOT RUN for want of data or of a second run", async () => {
  const r = await decide([{ id: "gpu-run", gpu: "FakeGPU" }]);
  assertEquals([r["t.pass"].status, r["t.pass"].ours, r["t.pass"].n], ["PASS", 66.7, 6]);
  assertEquals(r["t.pass"].expected, "70 ± 5 %");
  assertEquals([r["t.fail"].status, r["t.fail"].ours], ["FAIL", 66.7]);
  assertEquals(r["t.gpu"].status, "PASS");
  assertEquals([r["t.empty"].status, r["t.empty"].why], ["NOT RUN", "carol was not judged"]);
  assertEquals([r["t.runs"].status, r["t.runs"].why], ["NOT RUN", "needs a second run"]);
});

Deno.test("claims on a CPU fixture run: a claim that needs a GPU is NOT RUN and says why", async () => {
  const r = await decide([{ id: "cpu-run", gpu: null }]);
  assertEquals([r["t.gpu"].status, r["t.gpu"].why, r["t.gpu"].ours], [
    "NOT RUN",
    "needs a GPU run",
    null,
  ]);
  assertEquals(r["t.pass"].status, "PASS");
});

Deno.test("a cross-run claim compares the same cells of two runs", async () => {
  const r = await decide(
    [{ id: "a", gpu: "FakeGPU" }, { id: "b", gpu: "FakeGPU", scale: 1.01 }],
    "a",
  );
  assertEquals(r["t.runs"].status, "PASS");
  assertEquals(Math.round(r["t.runs"].ours! * 100) / 100, 1);
  const far = await decide(
    [{ id: "a", gpu: "FakeGPU" }, { id: "b", gpu: "FakeGPU", scale: 1.5 }],
    "a",
  );
  assertEquals(far["t.runs"].status, "FAIL");
});

Deno.test("a claims file that cannot be used is one line naming the file, JSON path and reason", () => {
  const dir = mkdtempSync(join(tmpdir(), "claims-bad-"));
  try {
    const p = join(dir, "claims.json");
    const write = (v: unknown) => writeFileSync(p, typeof v === "string" ? v : JSON.stringify(v));
    write("{ not json");
    const e0 = assertThrows(() => loadClaims(p, "claims.json"));
    assert(e0 instanceof ClaimsError);
    assertMatch(e0.message, /^claims\.json: \$: /);
    const bad = structuredClone(FIXTURE_CLAIMS) as { claims: Record<string, unknown>[] };
    bad.claims[1].check = { op: "≈", value: 1 };
    write(bad);
    assertMatch(
      assertThrows(() => loadClaims(p, "claims.json")).message,
      /^claims\.json: \$\.claims\[1\]\.check\.op: /,
    );
    const dup = structuredClone(FIXTURE_CLAIMS) as { claims: Record<string, unknown>[] };
    dup.claims[1].id = "t.pass";
    write(dup);
    assertEquals(
      assertThrows(() => loadClaims(p, "claims.json")).message,
      'claims.json: $.claims[1].id: "t.pass" repeats',
    );
    const req = structuredClone(FIXTURE_CLAIMS) as { claims: Record<string, unknown>[] };
    req.claims[0].requires = ["tpu"];
    write(req);
    assertMatch(
      assertThrows(() => loadClaims(p, "claims.json")).message,
      /^claims\.json: \$\.claims\[0\]\.requires\[0\]: unknown requirement "tpu"/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("claims.json at the repository root parses, and every claim names how to check it", () => {
  const f = loadClaims(join(ROOT, "claims.json"), "claims.json");
  for (const c of f.claims) assertMatch(c.how, /\S/);
});
