/**
 * What stops a night: an upstream that is unreadable or wrong as data. What generate resolves or
 * judges by design (a definition the run provides, a foreign trace's solution, a solution's own
 * signature or syntax) is reported and left to it.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import { type Diagnostic, REPO_ROOT } from "../engine/mod.ts";
import { checkServingTrace, checkTraceSet, isTolerated, runDefinitionNames } from "./validate.ts";

const err = (file: string, path: string, message: string): Diagnostic => ({
  level: "error",
  file,
  path,
  message,
});

Deno.test("isTolerated: what generate handles passes, the rest stops the night", () => {
  const run = new Set(["rmsnorm_h128"]);
  const yes = [
    err(
      "solutions/a/x.json",
      "$.definition",
      'definition "rmsnorm_h128" does not exist in this TraceSet',
    ),
    err(
      "workloads/r.jsonl",
      "$.definition",
      'definition "rmsnorm_h128" does not exist in this TraceSet; 3 lines',
    ),
    err("traces/g.jsonl", "$.solution", 'solution "s" does not exist in this TraceSet'),
    err("solutions/a/x.json", "$.spec.entry_point", "main.py:5: def run takes 6 parameters"),
    err("solutions/a/x.json", "$.sources[0].content", "main.py does not parse: invalid syntax"),
    { ...err("definitions/d.json", "$", "anything"), level: "warning" as const },
  ];
  for (const d of yes) assert(isTolerated(d, run), JSON.stringify(d));
  const no = [
    err("workloads/r.jsonl", "$", "malformed JSON: Unexpected end of JSON input"),
    err(
      "solutions/a/x.json",
      "$.definition",
      'definition "gemm_x" does not exist in this TraceSet',
    ),
    err("solutions/a/x.json", "$.spec.language", "Invalid option"),
    err("definitions/d.json", "$.reference", "does not parse"),
    err("workloads/r.jsonl", "$.solution", 'solution "s" does not exist in this TraceSet'),
  ];
  for (const d of no) assert(!isTolerated(d, run), JSON.stringify(d));
});

Deno.test("runDefinitionNames: the definitions a profile's roots provide, by file name", () => {
  const names = runDefinitionNames(REPO_ROOT, ["data"]);
  assert(names.has("rmsnorm_h128") && names.size > 100, String(names.size));
  assertEquals(runDefinitionNames(REPO_ROOT, ["no/such/root"]).size, 0);
});

Deno.test("checkTraceSet names the file, line and reason of a malformed line, under the source's label", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-validate-"));
  try {
    mkdirSync(join(dir, "workloads/rmsnorm"), { recursive: true });
    const line = JSON.stringify({
      definition: "rmsnorm_h128",
      workload: { axes: { batch_size: 2 }, inputs: {}, uuid: "u1" },
      solution: null,
      evaluation: null,
    });
    writeFileSync(join(dir, "workloads/rmsnorm/rmsnorm_h128.jsonl"), `${line}\n{"definition":\n`);
    const run = new Set(["rmsnorm_h128"]);
    const c = await checkTraceSet(dir, "up@abc", run);
    assertEquals(c.errors.length, 1, JSON.stringify(c.errors));
    assertEquals([c.errors[0].file, c.errors[0].line], [
      "up@abc/workloads/rmsnorm/rmsnorm_h128.jsonl",
      2,
    ]);
    assertMatch(c.errors[0].message, /malformed JSON/);
    // The first line's definition comes from the run: left to generate, not an error.
    assert(c.tolerated.some((d) => /rmsnorm_h128" does not exist/.test(d.message)));
    const unknown = await checkTraceSet(dir, "up@abc", new Set());
    assertEquals(unknown.errors.length, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("checkServingTrace: the parser collect replays with, its first problem with the line", () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-validate-"));
  try {
    const f = join(dir, "t.csv");
    writeFileSync(
      f,
      "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n",
    );
    assertEquals(checkServingTrace(f, "azure-csv", "conv").errors, []);
    writeFileSync(
      f,
      "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\nyesterday,1,2\n",
    );
    const bad = checkServingTrace(f, "azure-csv", "conv");
    assertEquals([bad.errors[0].file, bad.errors[0].line], ["conv", 3]);
    assertMatch(bad.errors[0].message, /TIMESTAMP/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
