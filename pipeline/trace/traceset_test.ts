import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import { formatDiagnostic, REPO_ROOT } from "../engine/mod.ts";
import { listFiles, loadTraceSet } from "./traceset.ts";
import { writeTraceSet } from "./write.ts";

/** The shared data folder beside the checkout (README: tests may read ../shared/data/flashinfer-trace). */
const SHARED = join(REPO_ROOT, "..", "shared", "data", "flashinfer-trace");
const haveShared = existsSync(SHARED);
if (!haveShared) console.log(`skipping shared-data tests: ${SHARED} is absent`);

Deno.test("the 156 official definitions in data/ load without a diagnostic", () => {
  const { set, diagnostics } = loadTraceSet(join(REPO_ROOT, "data"));
  assertEquals(diagnostics.map(formatDiagnostic), []);
  assertEquals(set.definitions.size, 156);
});

Deno.test({
  name: "the shared definitions and all 663 shared workloads load",
  ignore: !haveShared,
  fn() {
    const { set, diagnostics } = loadTraceSet(SHARED);
    assertEquals(diagnostics.map(formatDiagnostic), []);
    assertEquals(set.definitions.size, 156);
    assertEquals([...set.workloads.values()].reduce((a, w) => a + w.length, 0), 663);
  },
});

Deno.test({
  name: "variants load except the files flashinfer-bench rejects, each reported with its reason",
  ignore: !haveShared,
  fn() {
    const unmerged = loadTraceSet(join(SHARED, "variants", "fib-unmerged-prs"));
    const bad = new Set(unmerged.diagnostics.map((d) => d.file));
    // The fp4 MoE drafts use a dtype outside the 11 of the format.
    assertEquals([...bad].every((f) => /moe_fp4/.test(f)), true, [...bad].join("\n"));
    assertEquals(
      unmerged.set.definitions.size + bad.size,
      listFiles(join(SHARED, "variants", "fib-unmerged-prs", "definitions"), ".json").length,
    );
    assert(unmerged.diagnostics.every((d) => /dtype/.test(d.path)));

    const example = loadTraceSet(join(SHARED, "variants", "fib-example-ffi"));
    assertEquals(example.diagnostics, []);
    assertEquals(example.set.solutions.size, 1);

    // The 2025-08 draft predates the format: every file is reported, none silently dropped.
    const draftRoot = join(SHARED, "variants", "xslingcn-flashinfer-trace-2025-08");
    const draft = loadTraceSet(draftRoot);
    const reported = new Set(draft.diagnostics.map((d) => d.file));
    for (
      const f of [
        ...listFiles(join(draftRoot, "definitions"), ".json"),
        ...listFiles(join(draftRoot, "solutions"), ".json"),
      ]
    ) {
      assert(reported.has(f.slice(draftRoot.length + 1)), `${f} not reported`);
    }
    assert(
      draft.diagnostics.some((d) => /exactly one "::"/.test(d.message)),
      "entry points without ::",
    );
  },
});

Deno.test({
  name: "writing through the canonical writer and reading again gives identical objects and bytes",
  ignore: !haveShared,
  fn() {
    const { set } = loadTraceSet(SHARED);
    const ex = loadTraceSet(join(SHARED, "variants", "fib-example-ffi")).set;
    for (const [k, v] of ex.solutions) set.solutions.set(k, v);
    const out1 = mkdtempSync(join(tmpdir(), "tp-rt1-"));
    const files = writeTraceSet(set, out1);
    const again = loadTraceSet(out1);
    assertEquals(again.diagnostics, []);
    assertEquals(again.set.definitions, set.definitions);
    assertEquals(again.set.workloads, set.workloads);
    assertEquals(again.set.solutions, set.solutions);
    const out2 = mkdtempSync(join(tmpdir(), "tp-rt2-"));
    writeTraceSet(again.set, out2);
    for (const f of files) {
      assertEquals(readFileSync(join(out2, f), "utf8"), readFileSync(join(out1, f), "utf8"), f);
    }
  },
});

function fixture(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), "tp-ts-"));
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(join(root, rel, ".."), { recursive: true });
    writeFileSync(join(root, rel), text);
  }
  return root;
}

const DEF = (name: string, op = "gemm") =>
  JSON.stringify({
    name,
    op_type: op,
    axes: { M: { type: "var" }, N: { type: "const", value: 4 } },
    inputs: { A: { shape: ["M", "N"], dtype: "float16" } },
    outputs: { C: { shape: ["M", "N"], dtype: "float16" } },
    reference: "def run(A):\n    return A\n",
  });
const SOL = (name: string, def: string) =>
  JSON.stringify({
    name,
    definition: def,
    author: "me",
    spec: { language: "python", target_hardware: ["cuda"], entry_point: "m.py::run" },
    sources: [{ path: "m.py", content: "def run(A, C): pass" }],
  });

Deno.test("duplicates, dangling references and files in the wrong folder are errors naming file and path", () => {
  const root = fixture({
    "definitions/gemm/g1.json": DEF("g1"),
    "definitions/other/g1.json": DEF("g1"),
    "definitions/rmsnorm/g2.json": DEF("g2"),
    "definitions/gemm/named_wrong.json": DEF("g3"),
    "solutions/me/gemm/g1/s1.json": SOL("s1", "g1"),
    "solutions/me/gemm/g1/s1b.json": SOL("s1", "g1"),
    "solutions/me/gemm/missing/s2.json": SOL("s2", "missing"),
    "workloads/gemm/missing.jsonl":
      '{"definition":"missing","workload":{"axes":{"M":1},"inputs":{},"uuid":"u"},"solution":null,"evaluation":null}\n',
    "workloads/gemm/g1.jsonl":
      '\n{"definition":"g1","workload":{"axes":{"M":1},"inputs":{},"uuid":"u"}}\n{not json\n',
  });
  const { set, diagnostics } = loadTraceSet(root);
  const lines = diagnostics.map(formatDiagnostic);
  const has = (re: RegExp) =>
    assert(lines.some((l) => re.test(l)), `no line matches ${re}:\n${lines.join("\n")}`);
  has(/^definitions\/other\/g1\.json: \$\.name: duplicate definition "g1"/);
  has(
    /^definitions\/rmsnorm\/g2\.json: \$\.op_type: op_type "gemm" but the file is in folder "rmsnorm"/,
  );
  has(/^definitions\/gemm\/named_wrong\.json: \$\.name: name "g3" does not match the file name/);
  has(
    /^solutions\/me\/gemm\/g1\/s1b\.json: \$\.name: (name "s1" does not match|duplicate solution "s1")/,
  );
  has(
    /^solutions\/me\/gemm\/missing\/s2\.json: \$\.definition: definition "missing" does not exist/,
  );
  has(/^workloads\/gemm\/missing\.jsonl:1: \$\.definition: definition "missing" does not exist/);
  has(/^workloads\/gemm\/g1\.jsonl:3: \$: malformed JSON/);
  // What is valid still loads.
  assertEquals(set.workloads.get("g1")?.length, 1);
  assert(set.definitions.has("g1") && set.solutions.has("s1"));
});

Deno.test("a missing blob is reported only when blobs are checked", () => {
  const root = fixture({
    "definitions/gemm/g1.json": DEF("g1"),
    "workloads/gemm/g1.jsonl":
      '{"definition":"g1","workload":{"axes":{"M":1},"inputs":{"A":{"type":"safetensors","path":"blob/x.safetensors","tensor_key":"A"}},"uuid":"u"},"solution":null,"evaluation":null}\n',
  });
  assertEquals(loadTraceSet(root).diagnostics, []);
  assertMatch(
    formatDiagnostic(loadTraceSet(root, { checkBlobs: true }).diagnostics[0]),
    /blob file "blob\/x.safetensors" does not exist/,
  );
});

/** The bad-input fixtures (tests/fixtures/bad-input/). */
const BAD = join(REPO_ROOT, "tests", "fixtures", "bad-input");

/** A copy of a fixture TraceSet one level under the temp folder, where `../../../..` is `/`. */
function copyFixture(name: string): string {
  const root = mkdtempSync(join(tmpdir(), "tp-fx-"));
  cpSync(join(BAD, name), root, { recursive: true });
  return root;
}

Deno.test("a file with bytes that are not UTF-8 is refused, naming the byte offset and line", () => {
  const root = fixture({ "definitions/gemm/g1.json": DEF("g1") });
  mkdirSync(join(root, "workloads", "gemm"), { recursive: true });
  cpSync(join(BAD, "non-utf8.jsonl"), join(root, "workloads", "gemm", "g1.jsonl"));
  const text = readFileSync(join(root, "workloads", "gemm", "g1.jsonl"));
  const offset = text.indexOf(0xff);
  const { set, diagnostics } = loadTraceSet(root);
  assertEquals(diagnostics.map(formatDiagnostic), [
    `workloads/gemm/g1.jsonl:2: $: not valid UTF-8: byte 0xff at byte offset ${offset} (line 2): ` +
    "invalid start byte; flashinfer-bench cannot read this file",
  ]);
  // flashinfer-bench fails on the whole file, so none of its lines is loaded.
  assertEquals(set.workloads.size, 0);
});

Deno.test("checkBlobs refuses blob paths that leave the TraceSet, without looking outside it", () => {
  const root = copyFixture("traversal");
  const outside = mkdtempSync(join(tmpdir(), "tp-outside-"));
  writeFileSync(join(outside, "x.safetensors"), "");
  mkdirSync(join(root, "blob"));
  symlinkSync(join(outside, "x.safetensors"), join(root, "blob", "link.safetensors"));
  const line = (uuid: string, path: string) =>
    JSON.stringify({
      definition: "g",
      workload: {
        axes: { M: 2 },
        inputs: { idx: { type: "safetensors", path, tensor_key: "idx" } },
        uuid,
      },
    }) + "\n";
  appendFileSync(join(root, "workloads/gemm/g.jsonl"), line("link", "blob/link.safetensors"));
  const lines = loadTraceSet(root, { checkBlobs: true }).diagnostics.map(formatDiagnostic);
  const at = "workloads/gemm/g.jsonl";
  assertEquals(lines, [
    `${at}:1: $.workload.inputs.idx.path: blob path "../../../../etc/passwd" leaves the TraceSet (contains ..)`,
    `${at}:2: $.workload.inputs.idx.path: blob path "/etc/passwd" is absolute; blob paths are relative`,
    `${at}:3: $.workload.inputs.idx.path: blob path "blob/link.safetensors" is a link leading outside the TraceSet`,
  ]);
});

Deno.test("a section folder that is a link leading outside the TraceSet is not read", () => {
  const elsewhere = fixture({ "gemm/g1.json": DEF("g1") });
  const root = mkdtempSync(join(tmpdir(), "tp-ts-"));
  symlinkSync(elsewhere, join(root, "definitions"));
  const { set, diagnostics } = loadTraceSet(root);
  assertEquals(diagnostics.map(formatDiagnostic), [
    "definitions: $: folder definitions/ is a link leading outside the TraceSet; not read",
  ]);
  assertEquals(set.definitions.size, 0);
});

Deno.test("loaded workloads and traces remember their file and line; unknown names are one line per file", () => {
  const wl = (def: string, uuid: string) =>
    JSON.stringify({ definition: def, workload: { axes: { M: 1 }, inputs: {}, uuid } });
  const root = fixture({
    "definitions/gemm/g1.json": DEF("g1"),
    "workloads/gemm/g1.jsonl": `\n${wl("g1", "a")}\n\n${wl("g1", "b")}\n`,
    "workloads/gemm/gone.jsonl": [1, 2, 3].map((i) => wl("gone", `u${i}`)).join("\n"),
  });
  const { set, diagnostics } = loadTraceSet(root);
  const [a, b] = set.workloads.get("g1")!;
  assertEquals(set.origins?.get(a), { file: "workloads/gemm/g1.jsonl", line: 2 });
  assertEquals(set.origins?.get(b), { file: "workloads/gemm/g1.jsonl", line: 4 });
  assertEquals(diagnostics.map(formatDiagnostic), [
    'workloads/gemm/gone.jsonl:1: $.definition: definition "gone" does not exist in this ' +
    "TraceSet; 3 lines of this file name it, this one first",
  ]);
});
