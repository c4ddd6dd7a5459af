/**
 * The conformance checklist of flashinfer-bench-reference.md §8.2, items 2-13, as tests:
 * what flashinfer-bench accepts we accept (legacy forms included), what it rejects we reject.
 */
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import {
  Axis,
  Correctness,
  Definition,
  Evaluation,
  InputSpec,
  Solution,
  solutionHash,
  Trace,
  uniqueSolutionName,
  Workload,
} from "./schema.ts";
import { formatTraceLine } from "./write.ts";

const REF = "import torch\n\ndef run(a):\n    return a\n";

function def(over: Record<string, unknown> = {}) {
  return {
    name: "d",
    op_type: "rmsnorm",
    axes: { n: { type: "var" }, h: { type: "const", value: 8 } },
    inputs: { a: { shape: ["n", "h"], dtype: "bfloat16" } },
    outputs: { out: { shape: ["n", "h"], dtype: "bfloat16" } },
    reference: REF,
    ...over,
  };
}

function sol(over: Record<string, unknown> = {}, spec: Record<string, unknown> = {}) {
  return {
    name: "s",
    definition: "d",
    author: "me",
    spec: { language: "python", target_hardware: ["cuda"], entry_point: "main.py::run", ...spec },
    sources: [{ path: "main.py", content: "def run(a, out):\n    out.copy_(a)\n" }],
    ...over,
  };
}

const messages = (r: { success: boolean; error?: { issues: Array<{ message: string }> } }) =>
  r.success ? [] : r.error!.issues.map((i) => i.message);

Deno.test("unknown keys are accepted and dropped (item 2)", () => {
  const d = Definition.parse(def({ build_commands: [], extra: 1 }));
  assert(!("build_commands" in d));
  const w = Workload.parse({ axes: {}, inputs: { a: { type: "random", seed: 3 } }, uuid: "u" });
  assertEquals(w.inputs.a, { type: "random" });
});

Deno.test("type defaults: {} is a var axis, {value} a const axis, {} input is random (item 2)", () => {
  assertEquals(Axis.parse({}), { type: "var" });
  assertEquals(Axis.parse({ value: 4 }), { type: "const", value: 4 });
  assertEquals(InputSpec.parse({}), { type: "random" });
  assertEquals(InputSpec.parse({ value: 2 }), { type: "scalar", value: 2 });
  assertEquals(InputSpec.parse({ path: "p", tensor_key: "k" }), {
    type: "safetensors",
    path: "p",
    tensor_key: "k",
  });
  assert(!InputSpec.safeParse({ type: "scalar" }).success, "a scalar needs a value");
});

Deno.test("shape must be present, null means scalar; unknown dtypes are rejected (item 3)", () => {
  assert(Definition.safeParse(def({ inputs: { a: { shape: null, dtype: "float32" } } })).success);
  const noShape = Definition.safeParse(def({ inputs: { a: { dtype: "float32" } } }));
  assert(!noShape.success);
  const badDtype = Definition.safeParse(def({ inputs: { a: { shape: ["n"], dtype: "uint8" } } }));
  assert(!badDtype.success);
  assertEquals(badDtype.error!.issues[0].path, ["inputs", "a", "dtype"]);
});

Deno.test("const axes may be 0 but not negative (item 4)", () => {
  assert(Axis.safeParse({ type: "const", value: 0 }).success);
  assert(!Axis.safeParse({ type: "const", value: -1 }).success);
  assert(!Workload.safeParse({ axes: { n: -1 }, inputs: {}, uuid: "u" }).success);
});

Deno.test("reference needs a top-level def run (item 5)", () => {
  assert(Definition.safeParse(def()).success);
  for (
    const bad of [
      "async def run(a):\n    return a\n",
      "run = lambda a: a\n",
      "class K:\n    def run(self, a):\n        return a\n",
      'def helper():\n    """\ndef run(x):\n"""\n',
    ]
  ) {
    const r = Definition.safeParse(def({ reference: bad }));
    assertEquals(messages(r), ["Reference must define a top-level function named 'run'"], bad);
  }
});

Deno.test("undeclared shape axes and overlapping names are errors naming the tensor (item 6)", () => {
  const r = Definition.safeParse(def({ inputs: { A: { shape: ["X"], dtype: "float32" } } }));
  assertEquals(messages(r), ['Input "A" references undefined axis "X"']);
  assertEquals(r.error!.issues[0].path, ["inputs", "A", "shape", 0]);
  const o = Definition.safeParse(def({ outputs: { a: { shape: ["n"], dtype: "float32" } } }));
  assertMatch(messages(o)[0], /must not overlap/);
});

Deno.test("entry_point has exactly one :: and names a source file (item 7)", () => {
  assert(Solution.safeParse(sol()).success);
  for (const ep of ["main.py", "a::b::c"]) {
    assertMatch(messages(Solution.safeParse(sol({}, { entry_point: ep })))[0], /exactly one "::"/);
  }
  assertMatch(
    messages(Solution.safeParse(sol({}, { entry_point: "other.py::run" })))[0],
    /not found in sources/,
  );
});

Deno.test("source paths are unique, relative, without .., with content; lists non-empty (item 8)", () => {
  const src = (path: string, content = "x") => ({ path, content });
  const cases: Array<[unknown[], RegExp]> = [
    [[src("main.py"), src("main.py")], /Duplicate source path/],
    [[src("main.py"), src("/etc/passwd")], /absolute path/],
    [[src("main.py"), src("../x.py")], /parent directory traversal/],
    [[src("main.py"), src("a/../../x.py")], /parent directory traversal/],
    [[src("main.py", "")], /at least 1|>=1|too small/i],
    [[], /too small|>=1|at least/i],
  ];
  for (const [sources, re] of cases) {
    assertMatch(
      messages(Solution.safeParse(sol({ sources })))[0] ?? "(accepted)",
      re,
      JSON.stringify(sources),
    );
  }
  assert(!Solution.safeParse(sol({}, { target_hardware: [] })).success);
});

Deno.test("destination_passing_style defaults to true and binding to null (item 9)", () => {
  const s = Solution.parse(sol());
  assertEquals(s.spec.destination_passing_style, true);
  assertEquals(s.spec.binding, null);
  assert(!Solution.safeParse(sol({}, { language: "Python" })).success, "languages are lower-case");
});

Deno.test("solution hash is SHA-1 over the unseparated fields (item 10)", async () => {
  const s = Solution.parse(sol());
  // definition + language + entry_point + binding("") + path + content, computed independently.
  const text = "d" + "python" + "main.py::run" + "" + "main.py" + s.sources[0].content;
  const digest = new Uint8Array(
    await crypto.subtle.digest("SHA-1", new TextEncoder().encode(text)),
  );
  const expected = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  assertEquals(solutionHash(s), expected);
  assertEquals(uniqueSolutionName(s), `s_${expected.slice(0, 8)}`);
  // Excluded fields do not change it.
  assertEquals(
    solutionHash(
      Solution.parse(sol({ name: "t", author: "x" }, { destination_passing_style: false })),
    ),
    expected,
  );
});

Deno.test("status matrix: PASSED needs both, INCORRECT_NUMERICAL correctness only, others neither (item 11)", () => {
  const env = { hardware: "NVIDIA H100" };
  const c = { max_relative_error: 0, max_absolute_error: 0 };
  const p = { latency_ms: 1, reference_latency_ms: 2, speedup_factor: 2 };
  const ev = (status: string, extra: Record<string, unknown>) =>
    Evaluation.safeParse({ status, environment: env, timestamp: "t", ...extra }).success;
  assert(ev("PASSED", { correctness: c, performance: p }));
  assert(!ev("PASSED", { correctness: c }), "PASSED without performance");
  assert(ev("INCORRECT_NUMERICAL", { correctness: c }));
  assert(!ev("INCORRECT_NUMERICAL", { correctness: c, performance: p }));
  for (
    const s of ["INCORRECT_SHAPE", "INCORRECT_DTYPE", "RUNTIME_ERROR", "COMPILE_ERROR", "TIMEOUT"]
  ) {
    assert(ev(s, {}), s);
    assert(!ev(s, { correctness: c }), `${s} with correctness`);
  }
  assert(!ev("CRASHED", {}), "only the 7 statuses");
});

Deno.test("errors are >= 0 or NaN, inf allowed; special floats round-trip as strings (item 12)", () => {
  const c = Correctness.parse({ max_relative_error: "infinity", max_absolute_error: "NaN" });
  assertEquals(c.max_relative_error, Infinity);
  assert(Number.isNaN(c.max_absolute_error));
  assert(!Correctness.safeParse({ max_relative_error: -1 }).success);
  const t = Trace.parse({
    definition: "d",
    workload: { axes: {}, inputs: {}, uuid: "u" },
    solution: "s",
    evaluation: {
      status: "INCORRECT_NUMERICAL",
      environment: { hardware: "h" },
      timestamp: "t",
      correctness: { max_relative_error: Infinity, max_absolute_error: NaN },
    },
  });
  const line = formatTraceLine(t);
  assertMatch(line, /"max_relative_error":"Infinity","max_absolute_error":"NaN"/);
  const again = Trace.parse(JSON.parse(line));
  assertEquals(again.evaluation!.correctness!.max_relative_error, Infinity);
});

Deno.test("a workload trace serialises explicit nulls (item 13)", () => {
  const t = Trace.parse({ definition: "d", workload: { axes: { n: 1 }, inputs: {}, uuid: "u" } });
  assertEquals(
    formatTraceLine(t),
    '{"definition":"d","workload":{"axes":{"n":1},"inputs":{},"uuid":"u"},"solution":null,"evaluation":null}',
  );
});

Deno.test("per-workload tolerances (SOL-ExecBench): optional, bounded, written only when present", () => {
  const base = { axes: { n: 2 }, inputs: { a: { type: "random" as const } }, uuid: "u" };
  const tol = { ...base, max_atol: 0.01, max_rtol: 0, required_matched_ratio: 0.99 };
  assertEquals(Workload.parse(tol), tol);
  for (
    const [field, value] of [
      ["max_atol", -1],
      ["max_rtol", "0.1"],
      ["required_matched_ratio", 1.5],
      ["required_matched_ratio", -0.1],
    ] as const
  ) {
    const r = Workload.safeParse({ ...base, [field]: value });
    assert(!r.success, `${field}: ${value} was accepted`);
    assertEquals(r.error.issues[0].path, [field]);
  }
  const line = (w: Record<string, unknown>) =>
    formatTraceLine(Trace.parse({ definition: "d", workload: w }));
  // Without them a line is flashinfer-bench's exactly; with them they follow its fields.
  assertEquals(
    line(base),
    '{"definition":"d","workload":{"axes":{"n":2},"inputs":{"a":{"type":"random"}},"uuid":"u"},' +
      '"solution":null,"evaluation":null}',
  );
  assertEquals(
    line({ required_matched_ratio: 0.99, max_rtol: 0, ...base, max_atol: 0.01 }),
    '{"definition":"d","workload":{"axes":{"n":2},"inputs":{"a":{"type":"random"}},"uuid":"u",' +
      '"max_atol":0.01,"max_rtol":0,"required_matched_ratio":0.99},"solution":null,"evaluation":null}',
  );
});
