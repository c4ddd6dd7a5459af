// Checks every kernel manifest (cuda/, triton/, baselines/) against the FlashInfer definitions
// and compiles every CUDA kernel's device code with nvcc for sm_90a (kernel part only: the torch
// binding needs torch's C++ headers and a GPU build, which the GPU driver cuda/tools/kbench.py does).
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { assert, assertEquals } from "../tests/assert.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DEFS_CANDIDATES = [
  join(ROOT, "data", "flashinfer-trace", "definitions"),
  join(ROOT, "..", "shared", "data", "flashinfer-trace", "definitions"),
  "/work/shared/data/flashinfer-trace/definitions",
];

interface Manifest {
  name: string;
  author: string;
  op_type: string;
  definition_regex: string;
  spec: { language: string; entry_point: string; binding?: string };
  sources: string[];
  params_file?: string;
  params: Record<string, (number | string)[]>;
  default: Record<string, number | string>;
}

function manifests(): { dir: string; m: Manifest }[] {
  const out: { dir: string; m: Manifest }[] = [];
  for (const kind of ["cuda", "triton", "baselines"]) {
    const base = join(ROOT, kind);
    if (!existsSync(base)) continue;
    for (const k of readdirSync(base).sort()) {
      const p = join(base, k, "kernel.json");
      if (existsSync(p)) out.push({ dir: join(base, k), m: JSON.parse(readFileSync(p, "utf8")) });
    }
  }
  return out;
}

function definitions(): Map<string, { op_type: string }> | null {
  const dir = DEFS_CANDIDATES.find((d) => existsSync(d));
  if (!dir) return null;
  const defs = new Map<string, { op_type: string }>();
  for (const op of readdirSync(dir)) {
    for (const f of readdirSync(join(dir, op))) {
      if (!f.endsWith(".json")) continue;
      const d = JSON.parse(readFileSync(join(dir, op, f), "utf8"));
      defs.set(d.name, d);
    }
  }
  return defs;
}

export function manifestProblems(dir: string, m: Manifest, defNames: string[] | null): string[] {
  const errs: string[] = [];
  const [file, symbol, ...rest] = m.spec.entry_point.split("::");
  if (!file || !symbol || rest.length) errs.push(`${m.name}: entry_point needs file::symbol`);
  if (!m.sources.includes(file)) errs.push(`${m.name}: entry file ${file} not in sources`);
  for (const s of m.sources) {
    if (!existsSync(join(dir, s))) errs.push(`${m.name}: missing source ${s}`);
  }
  if (existsSync(join(dir, file))) {
    const src = readFileSync(join(dir, file), "utf8");
    const sym = symbol.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const found = m.spec.language === "cuda" || m.spec.language === "cpp"
      ? new RegExp(`m\\.def\\(\\s*"${sym}"`).test(src)
      : new RegExp(`^def ${sym}\\(`, "m").test(src);
    if (!found) errs.push(`${m.name}: symbol ${symbol} not exported by ${file}`);
    if (m.params_file && !src.includes(m.params_file.replace(/\.py$/, ""))) {
      errs.push(`${m.name}: ${file} does not read ${m.params_file}`);
    }
  }
  if (m.spec.language === "cuda" && m.spec.binding !== "torch") {
    errs.push(`${m.name}: CUDA kernels use the torch binding`);
  }
  const want = m.author === "tracepipe" ? "tracepipe" : null;
  if (want === null && !["baseline", "flashinfer"].includes(m.author)) {
    errs.push(`${m.name}: unexpected author ${m.author}`);
  }
  const points = Object.values(m.params).reduce((n, v) => n * v.length, 1);
  if (points > 8) errs.push(`${m.name}: sweep has ${points} points (> 8)`);
  for (const k of Object.keys(m.params)) {
    if (!(k in m.default)) errs.push(`${m.name}: default lacks swept parameter ${k}`);
  }
  if (Object.keys(m.params).length && !m.params_file) {
    errs.push(`${m.name}: sweep without params_file`);
  }
  if (defNames) {
    const re = new RegExp(m.definition_regex);
    if (!defNames.some((n) => re.test(n))) errs.push(`${m.name}: regex matches no definition`);
  }
  return errs;
}

Deno.test("kernel manifests match definitions, sources and entry points", () => {
  const defs = definitions();
  if (!defs) console.log("SKIP definition matching: no flashinfer-trace definitions folder found");
  const ms = manifests();
  assert(ms.length >= 8, `expected the kernel manifests, found ${ms.length}`);
  const errs = ms.flatMap(({ dir, m }) => manifestProblems(dir, m, defs ? [...defs.keys()] : null));
  assertEquals(errs, []);
  if (defs) {
    for (const { m } of ms) {
      const re = new RegExp(m.definition_regex);
      for (const [name, d] of defs) {
        if (re.test(name)) {
          assertEquals(d.op_type, m.op_type, `${m.name} serves ${name} of another op_type`);
        }
      }
    }
  }
});

Deno.test("manifest check can fail (broken manifest is reported)", () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-kt-"));
  writeFileSync(join(dir, "k.cu"), "void run() {}\n");
  const bad: Manifest = {
    name: "bad",
    author: "tracepipe",
    op_type: "gemm",
    definition_regex: "^nothing_matches$",
    spec: { language: "cuda", entry_point: "k.cu::run", binding: "torch" },
    sources: ["k.cu", "missing.cu"],
    params_file: "tp_params.h",
    params: { A: [1, 2, 3], B: [1, 2, 3] },
    default: { A: 1 },
  };
  const errs = manifestProblems(dir, bad, ["gemm_n1_k1"]);
  for (
    const frag of ["missing source", "not exported", "does not read", "> 8", "lacks", "no def"]
  ) {
    assert(errs.some((e) => e.includes(frag)), `expected a problem containing "${frag}"`);
  }
});

const NVCC = [Deno.env.get("NVCC"), "/usr/local/cuda-13.0/bin/nvcc", "/usr/local/cuda/bin/nvcc"]
  .find((p) => p && existsSync(p));

Deno.test("CUDA kernels compile for sm_90a (device code, default and every sweep point)", async () => {
  if (!NVCC) {
    console.log("SKIP nvcc not found (set NVCC=/path/to/nvcc)");
    return;
  }
  const cudaMs = manifests().filter(({ m }) => m.spec.language === "cuda");
  assert(cudaMs.length >= 4, "expected the CUDA kernels");
  const jobs: { label: string; args: string[] }[] = [];
  for (const { dir, m } of cudaMs) {
    const keys = Object.keys(m.params);
    let combos: Record<string, number | string>[] = [{}];
    for (const k of keys) {
      combos = combos.flatMap((c) => m.params[k].map((v) => ({ ...c, [k]: v })));
    }
    for (const [i, combo] of [{}, ...combos].entries()) {
      const p = { ...m.default, ...combo };
      const inc = mkdtempSync(join(tmpdir(), "tp-cu-"));
      writeFileSync(
        join(inc, m.params_file ?? "tp_params.h"),
        Object.entries(p).map(([k, v]) => `#define ${k} ${v}\n`).join(""),
      );
      for (const s of m.sources.filter((s) => s.endsWith(".cu"))) {
        jobs.push({
          label: `${m.name}#${i} ${JSON.stringify(p)}`,
          args: [
            "-gencode=arch=compute_90a,code=sm_90a",
            "-std=c++17",
            "-O3",
            "-DTP_KERNEL_ONLY",
            `-I${inc}`,
            `-I${dir}`,
            "-c",
            join(dir, s),
            "-o",
            join(inc, "k.o"),
          ],
        });
      }
    }
  }
  const failures: string[] = [];
  // compile in parallel batches
  const batch = 8;
  for (let i = 0; i < jobs.length; i += batch) {
    const slice = jobs.slice(i, i + batch);
    const outs = await Promise.all(
      slice.map((j) =>
        new Deno.Command(NVCC, { args: j.args, stdout: "piped", stderr: "piped" }).output()
      ),
    );
    outs.forEach((o, k) => {
      if (!o.success) {
        failures.push(`${slice[k].label}: ${new TextDecoder().decode(o.stderr).slice(-800)}`);
      }
    });
  }
  console.log(`compiled ${jobs.length} CUDA translation units, ${failures.length} failed`);
  assertEquals(failures, []);
});
