import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTraceSet } from "../../pipeline/trace/mod.ts";
import { buildSweep, loadManifest, matchDefinitions, unmetRequirement } from "./sweep.ts";
import { RMS_TRITON } from "./testdata/manifests.ts";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";

const root = new URL("../..", import.meta.url).pathname;
const defs = () => loadTraceSet(join(root, "stages/generate/testdata/run")).set.definitions;

function kernel(manifest: Record<string, unknown>, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "tp-kernel-"));
  for (const [p, c] of Object.entries(files)) writeFileSync(join(dir, p), c);
  writeFileSync(join(dir, "kernel.json"), JSON.stringify(manifest));
  return dir;
}
const MAIN_CPP =
  "torch::Tensor run(torch::Tensor hidden_states, torch::Tensor weight) { return hidden_states; }\n" +
  'PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("run", &run); }\n';
const cudaManifest = {
  name: "rms_cuda",
  author: "tracepipe",
  op_type: "rmsnorm",
  definition_regex: "rmsnorm_h(128|2048)",
  spec: {
    language: "cuda",
    target_hardware: ["H100"],
    entry_point: "main.cpp::run",
    binding: "torch",
    destination_passing_style: false,
  },
  sources: ["kernel.cu", "main.cpp"],
  params_file: "tp_params.h",
  params: { THREADS: [128, 256], VEC: [4, 8] },
  default: { THREADS: 256, VEC: 8, UNROLL: true },
  description: "RMSNorm kernel.",
};

Deno.test("grid sweep: one solution per (definition × point), names and params files deterministic", () => {
  const dir = kernel(cudaManifest, {
    "kernel.cu": '#include "tp_params.h"\n',
    "main.cpp": MAIN_CPP,
  });
  const { manifest, diagnostics } = loadManifest(join(dir, "kernel.json"), "k/kernel.json");
  assertEquals(diagnostics, []);
  assert(manifest);
  const matched = matchDefinitions(manifest, defs().values());
  assertEquals(matched.map((d) => d.name), ["rmsnorm_h128", "rmsnorm_h2048"]);
  const r = buildSweep(manifest, dir, matched, "grid", "k/kernel.json");
  assertEquals(r.diagnostics, []);
  assertEquals(r.solutions.length, 8);
  assertEquals(r.solutions[0].name, "rms_cuda__rmsnorm_h128__THREADS-128__VEC-4");
  const params = r.solutions[0].sources.find((s) => s.path === "tp_params.h")!.content;
  assertEquals(params.split("\n").filter((l) => l.startsWith("#define")), [
    "#define THREADS 128",
    "#define UNROLL 1",
    "#define VEC 4",
  ]);
  assertEquals(r.index[3], {
    solution: "rms_cuda__rmsnorm_h128__THREADS-256__VEC-8",
    kernel: "rms_cuda",
    definition: "rmsnorm_h128",
    point: { THREADS: 256, VEC: 8 },
  });
  assertEquals(new Set(r.solutions.map((s) => s.name)).size, 8);
  // default mode: the default point only.
  const d = buildSweep(manifest, dir, matched, "default", "k");
  assertEquals(d.solutions.map((s) => s.name), [
    "rms_cuda__rmsnorm_h128__THREADS-256__VEC-8",
    "rms_cuda__rmsnorm_h2048__THREADS-256__VEC-8",
  ]);
});

Deno.test("python params file and kernels without params", () => {
  const m = {
    ...cudaManifest,
    ...RMS_TRITON,
    definition_regex: cudaManifest.definition_regex,
    params: { BLOCK: [64] },
    default: { NAME: "fast", ON: false },
  };
  const dir = kernel(m, {
    "main.py":
      "from tp_params import BLOCK\n\ndef run(hidden_states, weight):\n    return hidden_states\n",
  });
  const { manifest } = loadManifest(join(dir, "kernel.json"), "k");
  const r = buildSweep(manifest!, dir, matchDefinitions(manifest!, defs().values()), "grid", "k");
  assertEquals(r.solutions[0].sources[1].content.split("\n").slice(1), [
    "BLOCK = 64",
    'NAME = "fast"',
    "ON = False",
    "",
  ]);
  const plain = { ...m, name: "plain", params_file: undefined, params: {}, default: {} };
  const dir2 = kernel(plain, { "main.py": "def run(hidden_states, weight):\n    pass\n" });
  const l = loadManifest(join(dir2, "kernel.json"), "k");
  const r2 = buildSweep(
    l.manifest!,
    dir2,
    matchDefinitions(l.manifest!, defs().values()),
    "grid",
    "k",
  );
  assertEquals(r2.solutions.map((s) => [s.name, s.sources.length]), [["plain__rmsnorm_h128", 1], [
    "plain__rmsnorm_h2048",
    1,
  ]]);
});

Deno.test("bad manifests are diagnostics naming the field", () => {
  const dir = kernel({ ...cudaManifest, params_file: undefined, definition_regex: "(" }, {});
  const { manifest, diagnostics } = loadManifest(join(dir, "kernel.json"), "cuda/x/kernel.json");
  assertEquals(manifest, undefined);
  assertEquals(diagnostics.map((d) => d.path).sort(), ["$.definition_regex", "$.params_file"]);
  const missing = kernel(cudaManifest, { "main.cpp": "x" });
  const r = buildSweep(
    loadManifest(join(missing, "kernel.json"), "k").manifest!,
    missing,
    [...defs().values()].slice(0, 1),
    "grid",
    "k",
  );
  assertMatch(r.diagnostics[0].message, /"kernel.cu" does not exist/);
  // An entry point that does not fit the definition drops the solutions, with the reason.
  const wrong = kernel({ ...cudaManifest, params: {}, params_file: undefined }, {
    "kernel.cu": "x",
    "main.cpp": MAIN_CPP.replace(", torch::Tensor weight", ""),
  });
  const w = buildSweep(
    loadManifest(join(wrong, "kernel.json"), "k").manifest!,
    wrong,
    [defs().get("rmsnorm_h128")!],
    "grid",
    "k",
  );
  assertEquals(w.solutions, []);
  assertMatch(w.diagnostics[0].message, /rms_cuda__rmsnorm_h128: .*at most 1 positional.*passes 2/);
});

Deno.test("grid regex: the whole grid only on matching definitions, the default point elsewhere", () => {
  const dir = kernel(cudaManifest, {
    "kernel.cu": '#include "tp_params.h"\n',
    "main.cpp": MAIN_CPP,
  });
  const { manifest } = loadManifest(join(dir, "kernel.json"), "k/kernel.json");
  const matched = matchDefinitions(manifest!, defs().values());
  const r = buildSweep(manifest!, dir, matched, "grid", "k", /^rmsnorm_h128$/);
  assertEquals(r.diagnostics, []);
  const byDef = (d: string) => r.solutions.filter((s) => s.definition === d).map((s) => s.name);
  assertEquals(byDef("rmsnorm_h128").length, 4);
  assertEquals(byDef("rmsnorm_h2048"), ["rms_cuda__rmsnorm_h2048__THREADS-256__VEC-8"]);
  // The same point gives the same sources for every definition, so the harness builds it once.
  const sourcesOf = (n: string) => r.solutions.find((s) => s.name === n)!.sources;
  assertEquals(
    sourcesOf("rms_cuda__rmsnorm_h128__THREADS-256__VEC-8"),
    sourcesOf("rms_cuda__rmsnorm_h2048__THREADS-256__VEC-8"),
  );
});

Deno.test("requires: a definition the kernel cannot serve is left out with the manifest's reason", () => {
  const dir = kernel({
    ...cudaManifest,
    requires: [
      { expr: "hidden_size <= 1024", reason: "one block holds the row" },
      { expr: "hidden_size % 64 == 0", reason: "rows in 64-element vectors" },
    ],
  }, { "kernel.cu": "// k\n", "main.cpp": MAIN_CPP });
  const { manifest } = loadManifest(join(dir, "kernel.json"), "k/kernel.json");
  const [h128, h2048] = matchDefinitions(manifest!, defs().values());
  assertEquals([h128.name, h2048.name], ["rmsnorm_h128", "rmsnorm_h2048"]);
  assertEquals(unmetRequirement(manifest!, h128), null);
  assertEquals(
    unmetRequirement(manifest!, h2048),
    "one block holds the row ($.requires[0]: hidden_size <= 1024)",
  );
  const unknown = { ...manifest!, requires: [{ expr: "group_size <= 8", reason: "x" }] };
  assertMatch(
    unmetRequirement(unknown, h128)!,
    /requires\[0\] "group_size <= 8" cannot be evaluated/,
  );
  assertEquals(unmetRequirement({ ...manifest!, requires: [] }, h2048), null);
});

Deno.test("dtypes: a definition whose tensors the kernel's dtypes do not cover is left out with the tensor named", () => {
  const dir = kernel({ ...cudaManifest, dtypes: ["float16"] }, {
    "kernel.cu": "// k\n",
    "main.cpp": MAIN_CPP,
  });
  const { manifest } = loadManifest(join(dir, "kernel.json"), "k/kernel.json");
  const [h128] = matchDefinitions(manifest!, defs().values());
  // The definition with every tensor in `dtype` but the first input in `first` (default: the same).
  const retype = (tensors: typeof h128.inputs, dtype: string) =>
    Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { ...t, dtype }]));
  const as = (dtype: string, first = dtype) => {
    const inputs = retype(h128.inputs, dtype);
    const name = Object.keys(inputs)[0];
    inputs[name] = { ...inputs[name], dtype: first } as typeof inputs[string];
    return { ...h128, inputs, outputs: retype(h128.outputs, dtype) } as typeof h128;
  };
  const first = Object.keys(h128.inputs)[0];
  assertEquals(unmetRequirement(manifest!, as("float16")), null);
  assertEquals(
    unmetRequirement(manifest!, as("float16", "bfloat16")),
    `the kernel takes float16; ${first} is bfloat16 ($.dtypes)`,
  );
  // Index tensors and other non-floating types are not the manifest's business.
  assertEquals(unmetRequirement(manifest!, as("float16", "int32")), null);
  // Without `dtypes`, any dtype is served (the kernel says nothing).
  assertEquals(unmetRequirement({ ...manifest!, dtypes: [] }, as("bfloat16")), null);
  // A dtype outside the floating-point ones is a manifest error.
  const bad = kernel({ ...cudaManifest, dtypes: ["int32"] }, {
    "kernel.cu": "// k\n",
    "main.cpp": MAIN_CPP,
  });
  assertEquals(loadManifest(join(bad, "kernel.json"), "k/kernel.json").manifest, undefined);
});
