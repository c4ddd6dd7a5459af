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

interface FixtureRunSpec {
  id: string;
  gpu: string | null;
  scale?: number;
  date?: string;
  extra?: Record<string, unknown>;
}

async function decide(runs: FixtureRunSpec[], on?: string, claims: unknown = FIXTURE_CLAIMS) {
  const dir = mkdtempSync(join(tmpdir(), "claims-"));
  try {
    const claimsPath = join(dir, "claims.json");
    writeFileSync(claimsPath, JSON.stringify(claims));
    const folders = runs.map((r) => readRunFolder(writeFixtureRun(dir, r.id, r)));
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

Deno.test("a claim on a measurement recorded beside the traces falls back to the newest run of the same GPU that records it", async () => {
  const claims = structuredClone(FIXTURE_CLAIMS) as { claims: Record<string, unknown>[] };
  const probe = {
    id: "t.record",
    source: "project",
    where: "fixture",
    claim: "a probe measured in a call of its own stays under 1",
    paper: null,
    unit: "",
    from: "newest-record",
    sql: "SELECT max(num) AS value, 1 AS n FROM run_facts WHERE key = 'measurements.probe'",
    check: { op: "<=", value: 1 },
    empty: "no probe recorded",
    how: "by hand",
  };
  claims.claims.push(probe, { ...probe, id: "t.record_here", from: "run" });
  const runs: FixtureRunSpec[] = [
    { id: "old", gpu: "FakeGPU", date: "2026-01-01", extra: { measurements: { probe: 0.5 } } },
    { id: "mid", gpu: "FakeGPU", date: "2026-01-02", extra: { measurements: { probe: 3 } } },
    { id: "other", gpu: "OtherGPU", date: "2026-01-03", extra: { measurements: { probe: 0.1 } } },
    { id: "new", gpu: "FakeGPU", date: "2026-01-04" },
  ];
  const r = await decide(runs, "new", claims);
  // The newest FakeGPU run with a probe decides (mid, FAIL), not OtherGPU's nor the older one's.
  assertEquals([r["t.record"].status, r["t.record"].ours, r["t.record"].recordedIn], [
    "FAIL",
    3,
    "mid",
  ]);
  assertEquals(r["t.record"].why, "recorded in run mid");
  // A claim decided on the run alone does not fall back; nor does one the run records itself.
  assertEquals([r["t.record_here"].status, r["t.record_here"].why], [
    "NOT RUN",
    "no probe recorded",
  ]);
  const own = await decide(runs, "old", claims);
  assertEquals([own["t.record"].status, own["t.record"].recordedIn], ["PASS", undefined]);
});
