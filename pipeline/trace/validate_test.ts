import { cpSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertEquals, assertMatch } from "../../tests/assert.ts";
import { formatDiagnostic, REPO_ROOT } from "../engine/mod.ts";

import { validatePath } from "./validate.ts";
import { workingPython } from "./validate_checks.ts";

const BAD = join(REPO_ROOT, "tests", "fixtures", "bad-input");
const DRAFT = join(REPO_ROOT, "data", "corpus", "xslingcn-flashinfer-trace-2025-08");
const python = await workingPython();
if (!python) console.log("skipping the Python parse of solutions: no Python interpreter here");

async function lines(path: string) {
  const { diagnostics, summary } = await validatePath(path);
  return { lines: diagnostics.map(formatDiagnostic), summary };
}

const errorsIn = (ls: string[]) => ls.filter((l) => !/: warning: /.test(l));

Deno.test("validate: an empty folder is an error, not '0 errors'", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-empty-"));
  const r = await lines(dir);
  assertEquals(r.lines.length, 1);
  assertMatch(r.lines[0], /: \$: nothing to validate: no definitions\/, workloads\//);
  mkdirSync(join(dir, "definitions"));
  const again = await lines(join(dir, "definitions"));
  assertMatch(again.lines.join("\n"), /definitions: \$: nothing to validate/);
});

Deno.test("validate: a definitions/ folder checks each definition", async () => {
  const r = await lines(join(BAD, "traceset", "definitions"));
  assertEquals(r.lines, []);
  assertMatch(
    r.summary,
    /definitions: 1 definitions, 0 workloads, 0 solutions, 0 traces \(in the TraceSet .*traceset\)/,
  );
});

Deno.test("validate: a workloads/ folder checks its workloads against the definitions above it", async () => {
  const r = await lines(join(BAD, "traceset", "workloads"));
  assertEquals(r.lines, ['workloads/gemm/g.jsonl:2: $.workload.axes: missing var axis "M"']);
  assertMatch(r.summary, /workloads: 0 definitions, 2 workloads, 0 solutions, 0 traces \(in the/);
  // Without a definitions/ folder above, the schema is all there is to check, and it says so.
  const bare = mkdtempSync(join(tmpdir(), "tp-bare-"));
  cpSync(join(BAD, "traceset", "workloads"), join(bare, "workloads"), { recursive: true });
  const b = await lines(join(bare, "workloads"));
  assertEquals(b.lines, []);
  assertMatch(b.summary, /2 lines of 1 JSONL files.*schema only: there is no definitions\/ folder/);
});

Deno.test("validate: every solution's entry point is checked against its definition", async () => {
  const r = await lines(join(BAD, "traceset"));
  const at = "solutions/me/gemm/g";
  const solutions = r.lines.filter((l) => l.startsWith("solutions/"));
  assertEquals(solutions.length, 3, solutions.join("\n"));
  assertMatch(
    solutions[0],
    /^solutions\/me\/gemm\/g\/arity\.json: \$\.spec\.entry_point: main\.py:1: def run takes at most 2 .* passes 3/,
  );
  // A syntax error is reported as one, with its line, where Python can parse the source.
  if (python) {
    assertMatch(
      solutions[1],
      /^solutions\/me\/gemm\/g\/syntax\.json: \$\.sources\[0\]\.content: main\.py does not parse: .* \(line 3\)$/,
    );
  }
  assertMatch(
    solutions[2],
    /^solutions\/me\/gemm\/g\/unregistered\.json: \$\.spec\.entry_point: entry symbol "run" is not registered/,
  );
  // One solution file of a TraceSet is checked against its definition there.
  const one = await lines(join(BAD, "traceset", at, "arity.json"));
  assertEquals(one.lines, [solutions[0]]);
  assertMatch(one.summary, /0 definitions, 0 workloads, 1 solutions, 0 traces \(in the TraceSet/);
});

Deno.test("validate: a solution file on its own is parsed, and says its definition was not found", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-lone-"));
  cpSync(join(BAD, "traceset", "solutions", "me", "gemm", "g", "syntax.json"), join(dir, "s.json"));
  const r = await lines(join(dir, "s.json"));
  if (python) {
    assertMatch(
      r.lines.join("\n"),
      /s\.json: \$\.sources\[0\]\.content: main\.py does not parse: .*\(line 3\)/,
    );
  }
  assertMatch(r.summary, /definition "g" not found: no TraceSet above s\.json/);
});

Deno.test("validate: the 2025 draft is said to be one, in one line, and checked as upgraded", async () => {
  const r = await lines(DRAFT);
  const notes = r.lines.filter((l) => /: warning: /.test(l));
  assertEquals(notes.length, 1);
  assertMatch(
    notes[0],
    /xslingcn-flashinfer-trace-2025-08: \$: warning: the 2025 draft of the FlashInfer Trace format .*upgraded in memory.*generate imports/,
  );
  const errors = r.lines.filter((l) => !/: warning: /.test(l));
  // Only what the upgrade leaves wrong: names that disagree with their files, the entry point
  // without "::", dangling names (one line per file), and the signature generate would reject.
  assertEquals(errors.filter((l) => /Invalid (input|option)/.test(l)), []);
  assertEquals(errors.length, 13, errors.join("\n"));
  assertMatch(
    errors.join("\n"),
    /batch_gqa_ragged_prefill_h32_kv8_d128_flashinfer\.json: \$\.spec\.entry_point: cannot upgrade: spec\.entry_point "run"/,
  );
  assertMatch(
    errors.join("\n"),
    /flashinfer_gqa_paged_decode_h32_kv8_d128_ps1\.json: \$\.spec\.entry_point: main\.py:5: def run takes at most 6/,
  );
  assertMatch(r.summary, /10 definitions, 172 workloads, 7 solutions, 0 traces/);
  // A draft file on its own: said so, and valid once upgraded.
  const one = await lines(join(DRAFT, "definitions", "gemm", "gemm_n_4096_k_4096.json"));
  assertEquals(errorsIn(one.lines), []);
  assertEquals(one.lines.length, 1);
  assertMatch(one.lines[0], /warning: the 2025 draft/);
});
