// The Hopper GEMM in development (gemm_sm90.cu) on a machine without a GPU: its kernels still build
// for sm_90a with nothing spilled and every setmaxnreg honoured, and the CPU emulation of its data
// flow (TMA's swizzle, the wgmma descriptors, the accumulator fragments, split-K) still matches a
// float32 product (within the harness's 1e-2 rule). What only the H100 can say is bench_gemm.py's (NOTES.md).
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { tmpdir } from "node:os";
import { assert, assertEquals } from "../../../tests/assert.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
/** The kernel folder the pipeline judges (`cuda/gemm_sm90/`); this folder keeps its tools. */
const KERNEL = join(HERE, "..", "..", "gemm_sm90");
const NVCC = Deno.env.get("NVCC") ?? "nvcc";
const PY = Deno.env.get("TRACEPIPE_PYTHON") ?? "/usr/bin/python3";

async function run(cmd: string, args: string[]) {
  try {
    const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return { ok: o.success, out: dec.decode(o.stdout) + dec.decode(o.stderr) };
  } catch (e) {
    return { ok: false, out: `${cmd}: ${(e as Error).message}`, missing: true };
  }
}

Deno.test("the Hopper GEMM builds for sm_90a: every kernel without spills or stack, setmaxnreg honoured", async () => {
  if ((await run(NVCC, ["--version"])).ok === false) {
    console.log(`SKIP ${NVCC} not runnable here (set NVCC=/path/to/nvcc)`);
    return;
  }
  const r = await run(NVCC, [
    "-DTP_NO_TORCH",
    "-c",
    "-gencode=arch=compute_90a,code=sm_90a",
    "-O3",
    "-std=c++17",
    "-Xptxas",
    "-v",
    `-I${KERNEL}`,
    join(KERNEL, "gemm_sm90.cu"),
    "-o",
    join(tmpdir(), `tp-wgmma-${Deno.pid}.o`),
  ]);
  assert(r.ok, r.out.slice(-2000));
  const frames = r.out.match(
    /\d+ bytes stack frame, \d+ bytes spill stores, \d+ bytes spill loads/g,
  ) ?? [];
  assertEquals(frames.length, 6, "one resource line per kernel (2 tile shapes, 4 swap-AB widths)");
  assertEquals(
    frames.filter((f) => f !== "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads"),
    [],
  );
  // C7508: ptxas ignored setmaxnreg, so the consumers would run on the launch cap's registers.
  assert(!r.out.includes("C7508"), r.out.slice(-2000));
});

Deno.test("the Hopper GEMM's data flow, emulated on the CPU, matches a float32 product with tails", async () => {
  const probe = await run(PY, ["-c", "import numpy"]);
  if (!probe.ok) {
    console.log(`SKIP ${PY} cannot import numpy: ${probe.out.trim().split("\n").pop()}`);
    return;
  }
  const r = await run(PY, [join(HERE, "emulate_layout.py")]);
  assert(r.ok, r.out.slice(-2000));
  const lines = r.out.trim().split("\n");
  assert(lines.length >= 7, `expected a line per shape, got:\n${r.out}`);
  assertEquals(lines.filter((l) => !/ OK /.test(l)), []);
});
