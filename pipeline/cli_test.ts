import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../tests/assert.ts";
import { runCli } from "../tests/cli.ts";
import { REPO_ROOT } from "./engine/mod.ts";
import { encodeSafetensors, intTensor, jsonSchemas } from "./trace/mod.ts";

const cli = (...args: string[]) => runCli(args);
const cliWith = (env: Record<string, string>, ...args: string[]) => runCli(args, { env });

/** The bad-input fixtures (tests/fixtures/bad-input/). */
const BAD_INPUT = join(REPO_ROOT, "tests", "fixtures", "bad-input");

const GOOD_DEF = {
  name: "g",
  op_type: "gemm",
  axes: { M: { type: "var" }, K: { type: "const", value: 4 } },
  inputs: { A: { shape: ["M", "K"], dtype: "float16" } },
  outputs: { C: { shape: ["M", "K"], dtype: "float16" } },
  reference: "def run(A):\n    return A\n",
};

const GOOD_SOL = {
  name: "s",
  definition: "g",
  author: "me",
  spec: { language: "python", target_hardware: ["cuda"], entry_point: "m.py::run" },
  sources: [{ path: "m.py", content: "def run(A, C): pass" }],
};

const EVAL = {
  definition: "g",
  workload: { axes: { M: 1 }, inputs: {}, uuid: "u" },
  solution: "s",
  evaluation: {
    status: "PASSED",
    environment: { hardware: "h" },
    timestamp: "t",
    correctness: { max_relative_error: 0, max_absolute_error: 0 },
  },
};

/** Each bad input, the file it goes in, and what its one line must say. */
const BAD: Array<[string, string, string | Uint8Array, RegExp]> = [
  ["malformed JSON", "d.json", '{"name": "g",', /d\.json: \$: malformed JSON/],
  [
    "a wrong type",
    "d.json",
    JSON.stringify({ ...GOOD_DEF, tags: "x" }),
    /d\.json: \$\.tags: .*expected array/,
  ],
  [
    "an unknown dtype",
    "d.json",
    JSON.stringify({ ...GOOD_DEF, inputs: { A: { shape: ["M"], dtype: "uint8" } } }),
    /d\.json: \$\.inputs\.A\.dtype: Invalid option: expected one of .*; got "uint8"$/m,
  ],
  [
    "a missing axis",
    "d.json",
    JSON.stringify({ ...GOOD_DEF, axes: { M: { type: "var" } } }),
    /d\.json: \$\.inputs\.A\.shape\[1\]: Input "A" references undefined axis "K"/,
  ],
  [
    "overlapping input/output names",
    "d.json",
    JSON.stringify({ ...GOOD_DEF, outputs: { A: GOOD_DEF.outputs.C } }),
    /d\.json: \$\.outputs\.A: Input and output names must not overlap/,
  ],
  [
    "an entry point without ::",
    "s.json",
    JSON.stringify({ ...GOOD_SOL, spec: { ...GOOD_SOL.spec, entry_point: "m.py" } }),
    /s\.json: \$\.spec\.entry_point: entry_point must have the form/,
  ],
  [
    "a source path with ..",
    "s.json",
    JSON.stringify({
      ...GOOD_SOL,
      sources: [...GOOD_SOL.sources, { path: "../x.py", content: "x" }],
    }),
    /s\.json: \$\.sources\[1\]\.path: parent directory traversal not allowed/,
  ],
  [
    "PASSED without performance",
    "t.jsonl",
    JSON.stringify(EVAL) + "\n",
    /t\.jsonl:1: \$\.evaluation\.performance: status PASSED requires performance/,
  ],
  [
    "bytes that are not UTF-8",
    "w.jsonl",
    readFileSync(join(BAD_INPUT, "non-utf8.jsonl")),
    /w\.jsonl:2: \$: not valid UTF-8: byte 0xff at byte offset 135 \(line 2\): invalid start byte/,
  ],
  [
    "terminal escapes and control bytes in a JSONL line",
    "w.jsonl",
    readFileSync(join(BAD_INPUT, "garbage.jsonl")),
    /w\.jsonl:2: \$: malformed JSON: Unexpected token '\\x1b', "\\x1b\[2J\\x1b\]0;pw/,
  ],
  [
    "a truncated safetensors file",
    "b.safetensors",
    encodeSafetensors({ kv_indptr: intTensor("I32", [0, 1, 2]) }).subarray(0, 30),
    /b\.safetensors: \$: truncated/,
  ],
];

for (const [what, file, content, expected] of BAD) {
  Deno.test(`validate: ${what} gets one clear line and exit code 2`, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tp-bad-"));
    writeFileSync(join(dir, file), content);
    const { code, text } = await cli("validate", join(dir, file));
    assertEquals(code, 2, text);
    assertMatch(text, expected);
    assert(!/\n\s+at /.test(text), `stack trace in:\n${text}`);
    // Whatever the input held, the terminal gets printable lines only.
    const raw = text.split("\n").filter((l) => /[\p{Cc}\u202e]/u.test(l));
    assertEquals(raw, [], "raw control characters in the output");
  });
}

Deno.test("validate: an empty folder is an error (exit 2), not '0 errors'", async () => {
  const { code, text } = await cli("validate", mkdtempSync(join(tmpdir(), "tp-empty-")));
  assertEquals(code, 2, text);
  assertMatch(text, /: \$: nothing to validate/);
});

Deno.test("validate: without Python, a solution's syntax error keeps the static message", async () => {
  const set = join(BAD_INPUT, "traceset");
  const { code, text } = await cliWith(
    { TRACEPIPE_PYTHON: "/nonexistent/python3" },
    "validate",
    set,
  );
  assertEquals(code, 2, text);
  assertMatch(text, /syntax\.json: \$\.spec\.entry_point: entry symbol "run" is not defined/);
  assertMatch(text, /\(no Python: references checked for `def run` only, sources not parsed\)/);
});

Deno.test("validate: a good definition passes with exit code 0", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-good-"));
  writeFileSync(join(dir, "g.json"), JSON.stringify(GOOD_DEF));
  const { code, text } = await cli("validate", join(dir, "g.json"));
  assertEquals(code, 0, text);
});

Deno.test("validate: a TraceSet checks workloads against definitions and blobs", async () => {
  const root = mkdtempSync(join(tmpdir(), "tp-set-"));
  mkdirSync(join(root, "definitions/gemm"), { recursive: true });
  mkdirSync(join(root, "workloads/gemm"), { recursive: true });
  mkdirSync(join(root, "blob"), { recursive: true });
  const def = {
    ...GOOD_DEF,
    inputs: { ...GOOD_DEF.inputs, idx: { shape: ["M"], dtype: "int32" } },
  };
  writeFileSync(join(root, "definitions/gemm/g.json"), JSON.stringify(def));
  writeFileSync(
    join(root, "blob/ok.safetensors"),
    encodeSafetensors({ idx: intTensor("I32", [0, 1]) }),
  );
  const wl = (uuid: string, m: number, blob: string) =>
    JSON.stringify({
      definition: "g",
      workload: {
        uuid,
        axes: { M: m },
        inputs: {
          A: { type: "random" },
          idx: { type: "safetensors", path: blob, tensor_key: "idx" },
        },
      },
      solution: null,
      evaluation: null,
    });
  writeFileSync(
    join(root, "workloads/gemm/g.jsonl"),
    [
      wl("u1", 2, "blob/ok.safetensors"),
      wl("u2", 3, "blob/ok.safetensors"),
      wl("u3", 2, "blob/none.safetensors"),
      wl("u4", 2, "../../../../etc/passwd"),
      wl("u5", 2, "/etc/passwd"),
      wl("u6", 2, "blob/outside.safetensors"),
    ].join("\n") + "\n",
  );
  // A link inside the TraceSet that leads outside it is refused like a `..` path.
  const outside = mkdtempSync(join(tmpdir(), "tp-outside-"));
  writeFileSync(
    join(outside, "x.safetensors"),
    encodeSafetensors({ idx: intTensor("I32", [0, 1]) }),
  );
  symlinkSync(join(outside, "x.safetensors"), join(root, "blob/outside.safetensors"));
  const { code, text } = await cli("validate", root);
  assertEquals(code, 2, text);
  assertMatch(
    text,
    /g\.jsonl:2: \$\.workload\.inputs\.idx: input "idx": blob shape \[2\] != expected \[3\]/,
  );
  assertMatch(
    text,
    /g\.jsonl:3: \$\.workload\.inputs\.idx\.path: blob blob\/none\.safetensors does not exist/,
  );
  assertMatch(text, /g\.jsonl:4: \$\.workload\.inputs\.idx\.path: .*leaves the TraceSet/);
  assertMatch(text, /g\.jsonl:5: \$\.workload\.inputs\.idx\.path: .*is absolute/);
  assertMatch(text, /g\.jsonl:6: \$\.workload\.inputs\.idx\.path: .*link leading outside/);
  assert(!/root:x:0:0/.test(text), "the contents of /etc/passwd were read");
  assert(!/g\.jsonl:1:/.test(text), text);
});

Deno.test("usage errors exit 2 without a stack trace", async () => {
  for (
    const args of [["frobnicate"], ["reproduce", "--from", "nope"], ["reproduce", "--set", "x"]]
  ) {
    const { code, text } = await cli(...args);
    assertEquals(code, 2, text);
    assert(!/\n\s+at /.test(text), text);
  }
});

Deno.test("the committed JSON Schemas are current (regenerate with `deno task schema`)", () => {
  for (const [file, text] of Object.entries(jsonSchemas())) {
    assertEquals(readFileSync(join(REPO_ROOT, "schema", "json", file), "utf8"), text, file);
  }
});

Deno.test("reproduce runs the definitions stage, then has nothing to do", async () => {
  const store = mkdtempSync(join(tmpdir(), "tp-cli-store-"));
  const first = await cli("reproduce", "--to", "definitions", "--store", store);
  assertEquals(first.code, 0, first.text);
  assertMatch(first.text, /\[definitions\] 156 definitions \(0 files rejected\)/);
  const second = await cli("reproduce", "--to", "definitions", "--store", store);
  assertEquals(second.code, 0, second.text);
  assertMatch(second.text, /nothing to do: every cell is up to date/);
  const why = await cli("why", "definitions", "--store", store);
  assertMatch(why.text, /nothing changed since the last run/);
});
