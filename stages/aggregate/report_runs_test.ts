/**
 * A shipped run's provenance names the machine that judged it (GPU, machine kind, driver, when,
 * commit) apart from the aggregation, which records no machine because its bytes are the same on any.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { assert, assertMatch } from "../../tests/assert.ts";
import { shippedMachines } from "./report_runs.ts";
import { readRunFolder } from "./runs.ts";
import { writeFixtureRun } from "./testdata/fixture_run.ts";

Deno.test("provenance: the judging machine of a shipped run, apart from the aggregation", () => {
  const parent = mkdtempSync(`${tmpdir()}/tp_machines_`);
  const dir = writeFixtureRun(parent, "h100-x", {
    gpu: "NVIDIA H100 80GB HBM3",
    extra: {
      machine: { kind: "lent machine", driver: "580.1", judged_utc: "2026-12-07T07:00" },
      commit: { judged: "a".repeat(40), aggregated: "b".repeat(40) },
    },
  });
  const line = shippedMachines(readRunFolder(dir));
  assertMatch(
    line,
    /^Judged on NVIDIA H100 80GB HBM3 \(lent machine; driver 580\.1; 2026-12-07T07:00\) at commit a{12}\. /,
  );
  assertMatch(line, /Aggregated from results\/h100-x\/ by `tp report --ship`/);
  assertMatch(line, /commit b{12} first shipped it\.$/);
  const bare = shippedMachines(readRunFolder(writeFixtureRun(parent, "cpu-y", { gpu: null })));
  assert(bare.startsWith("Judged on no GPU at commit 000000000000."), bare);
});
