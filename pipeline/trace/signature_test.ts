import { assertEquals, assertMatch } from "../../tests/assert.ts";
import { readFileSync } from "node:fs";
import { type Definition, listFiles, loadTraceSet, parseSolution, type Solution } from "./mod.ts";
import { checkSolutionSignature, findPythonSymbol, parseCppParams } from "./signature.ts";

const root = new URL("../..", import.meta.url).pathname;
const def: Definition = {
  name: "d",
  op_type: "x",
  axes: { n: { type: "var" } },
  inputs: { A: { shape: ["n"], dtype: "float32" }, B: { shape: ["n"], dtype: "float32" } },
  outputs: { C: { shape: ["n"], dtype: "float32" } },
  reference: "def run(A, B):\n    return A + B\n",
  tags: [],
  constraints: [],
};
const sol = (
  language: Solution["spec"]["language"],
  entry: string,
  files: Record<string, string>,
  dps = false,
  binding: "torch" | "tvm-ffi" | null = null,
): Solution => ({
  name: "s",
  definition: "d",
  author: "t",
  spec: {
    language,
    target_hardware: ["H100"],
    entry_point: entry,
    dependencies: [],
    destination_passing_style: dps,
    binding,
  },
  sources: Object.entries(files).map(([path, content]) => ({ path, content })),
});
const py = (code: string, dps = false) =>
  checkSolutionSignature(sol("python", "main.py::run", { "main.py": code }, dps), def);

Deno.test("python: matching value-returning and DPS signatures pass", () => {
  assertEquals(py("def run(A, B):\n    return A + B\n"), { errors: [], warnings: [] });
  assertEquals(
    py(
      "import torch\n@torch.no_grad()\ndef run(\n    A: torch.Tensor,\n    B,\n    C,\n):\n    C.copy_(A + B)\n",
      true,
    ),
    { errors: [], warnings: [] },
  );
  assertEquals(py("def run(A, B, scale=1.0, *, flag=False):\n    pass\n"), {
    errors: [],
    warnings: [],
  });
  assertEquals(py("def run(*args):\n    pass\n").errors, []);
});

Deno.test("python: count mismatches, required kw-only and missing symbols are errors", () => {
  assertMatch(py("def run(A):\n    pass\n").errors[0], /at most 1 positional.*passes 2/);
  assertMatch(py("def run(A, B):\n    pass\n", true).errors[0], /at most 2 positional.*passes 3/);
  assertMatch(py("def run(A, B, C):\n    pass\n").errors[0], /3 required positional.*passes 2/);
  assertMatch(py("def run(A, B, *, key):\n    pass\n").errors[0], /keyword-only.*key/);
  assertMatch(
    py("def kernel(A, B):\n    pass\n").errors[0],
    /"run" is not defined at the top level/,
  );
  // Nested or quoted definitions do not count.
  assertMatch(
    py('class K:\n    def run(self, A, B):\n        pass\nDOC = """\ndef run(A, B):\n"""\n')
      .errors[0],
    /not defined/,
  );
  assertMatch(
    checkSolutionSignature(sol("python", "main.cu::run", { "main.cu": "x" }), def).errors[0],
    /must be a \.py file/,
  );
});

Deno.test("python: names are compared where given; dynamic bindings are accepted", () => {
  const r = py("def run(x, B):\n    pass\n");
  assertEquals(r.errors, []);
  assertMatch(r.warnings[0], /parameter 1 is named "x".*"A"/);
  assertEquals(py("from .impl import fast as run\n").errors, []);
  assertEquals(findPythonSymbol("run = make_kernel()\n", "run")?.kind, "other");
});

Deno.test("cpp: parameter parsing handles templates, defaults and unnamed parameters", () => {
  const ps = parseCppParams(
    "const torch::Tensor& A, std::vector<int64_t> dims, c10::optional<double> s = c10::nullopt, torch::Tensor",
  );
  assertEquals(ps.map((p) => [p.name, p.hasDefault]), [["A", false], ["dims", false], ["s", true], [
    undefined,
    false,
  ]]);
  assertEquals(parseCppParams("void"), []);
});

const cu = (main: string, dps = false, binding: "torch" | "tvm-ffi" | null = "torch") =>
  checkSolutionSignature(
    sol(
      "cuda",
      "main.cpp::run",
      { "kernel.cu": "__global__ void k() {}\n", "main.cpp": main },
      dps,
      binding,
    ),
    def,
  );

Deno.test("cuda torch binding: registration and signature are checked", () => {
  const fn = "torch::Tensor run(torch::Tensor A, torch::Tensor B) {\n  return A;\n}\n";
  assertEquals(
    cu(fn + 'PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {\n  m.def("run", &run, "doc");\n}\n').errors,
    [],
  );
  assertMatch(
    cu(fn + 'PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {\n  m.def("forward", &run);\n}\n').errors[0],
    /not registered/,
  );
  assertMatch(
    cu(
      "torch::Tensor run(torch::Tensor A) { return A; }\n" +
        'PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("run", &run); }\n',
    ).errors[0],
    /at most 1 positional/,
  );
  // py::arg names and defaults override the C++ declaration; a comment does not register.
  const withArgs = "torch::Tensor run(torch::Tensor a, torch::Tensor b, double s) { return a; }\n" +
    '// m.def("run", &other);\nPYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("run", &run, py::arg("A"), py::arg("B"), py::arg("s") = 1.0); }\n';
  assertEquals(cu(withArgs), { errors: [], warnings: [] });
  assertMatch(
    cu('PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("run", &missing_fn); }\n').errors[0],
    /not defined in any source/,
  );
  // TORCH_LIBRARY schema strings.
  assertEquals(
    cu('TORCH_LIBRARY(tp, m) { m.def("run(Tensor A, Tensor B) -> Tensor"); }\n').errors,
    [],
  );
  assertMatch(
    cu('TORCH_LIBRARY(tp, m) { m.def("run(Tensor A) -> Tensor"); }\n').errors[0],
    /at most 1/,
  );
});

Deno.test("cuda tvm-ffi binding: the export is required and DPS counts outputs", () => {
  const fn = "void run(TensorView A, TensorView B, TensorView C) {}\n";
  assertEquals(cu(fn + "TVM_FFI_DLL_EXPORT_TYPED_FUNC(run, run);\n", true, null).errors, []);
  assertMatch(
    cu(fn + "TVM_FFI_DLL_EXPORT_TYPED_FUNC(run, run);\n", false, null).errors[0],
    /at most 2.*passes 2|takes 3 required/,
  );
  assertMatch(cu(fn, true, "tvm-ffi").errors[0], /not exported/);
});

Deno.test("real corpus: the 18 gpt-5 torch solutions and the tvm-ffi example pass", () => {
  const defs = loadTraceSet(`${root}/stages/generate/testdata/run`).set.definitions;
  for (const [ffi, d] of loadTraceSet(`${root}/data/corpus/fib-example-ffi`).set.definitions) {
    defs.set(ffi, d);
  }
  let n = 0;
  for (const dir of ["pr221-gpt-5", "fib-example-ffi"]) {
    for (const f of listFiles(`${root}/data/corpus/${dir}/solutions`, ".json")) {
      const p = parseSolution(readFileSync(f, "utf8"), f);
      if (!p.ok) throw new Error(f);
      const r = checkSolutionSignature(p.value, defs.get(p.value.definition)!);
      assertEquals(r.errors, [], f);
      n++;
    }
  }
  assertEquals(n, 19);
});
