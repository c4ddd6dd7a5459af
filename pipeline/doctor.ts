/**
 * `tp doctor`: the toolchains and GPUs found here, which GPUs the judging stages' lanes would use and
 * who holds each of them now, and what the pipeline can run on this machine.
 */
import { describeHolder, discoverToolchain, gpuArch, type Toolchain } from "./engine/mod.ts";
import { FAKE_GPUS_ENV, gpuLockHolder, hostGpus } from "./harness/mod.ts";

/**
 * One line per GPU the judging stages' lanes would use (those `CUDA_VISIBLE_DEVICES` leaves visible,
 * or `TRACEPIPE_FAKE_GPUS`'s): index, model, memory, and whether another run holds its lock.
 */
export function gpuLines(tc: Toolchain, env = Deno.env.toObject()): Array<[string, string]> {
  const fake = env[FAKE_GPUS_ENV] ? ` (fake: ${FAKE_GPUS_ENV})` : "";
  const gpus = hostGpus(tc.gpus, env);
  if (gpus.length === 0) return [["gpu", "none"]];
  return gpus.map((g) => {
    const holder = gpuLockHolder(g);
    const facts = fake ? [] : [`cc ${g.computeCapability}`, `driver ${g.driver}`];
    return [
      `gpu ${g.index}`,
      [g.name + fake, ...facts, `${g.memoryMiB} MiB`].join(", ") +
      `; ${holder ? `in use by ${describeHolder(holder)}` : "free"}`,
    ];
  });
}

/** Prints what doctor finds; returns the exit code (0). */
export async function doctor(): Promise<number> {
  const tc: Toolchain = await discoverToolchain();
  const line = (k: string, v: string) => console.log(`${k.padEnd(10)} ${v}`);
  line("os", `${tc.os} ${tc.arch}`);
  line("deno", tc.deno);
  line(
    "python",
    tc.python
      ? `${tc.python.version} (${tc.python.path}); torch ${tc.python.torch ?? "absent"}; triton ${
        tc.python.triton ?? "absent"
      }`
      : "absent",
  );
  line("nvcc", tc.nvcc ? `${tc.nvcc.version} (${tc.nvcc.path})` : "absent");
  line("ptxas", tc.ptxas ? `${tc.ptxas.version}` : "absent");
  for (const [k, t] of [["c++", tc.hostCompilers?.cxx], ["g++", tc.hostCompilers?.gxx]] as const) {
    line(k, t ? `${t.version} (${t.path})` : "absent");
  }
  for (const [k, v] of gpuLines(tc)) line(k, v);
  line(
    "nix",
    tc.nix
      ? `inside the dev shell (${tc.nix.storePaths.length} store paths)`
      : "not in a Nix shell",
  );
  console.log("\nwhat can run here:");
  const gpu = tc.gpus.length > 0 && tc.python?.cudaAvailable;
  console.log(`  definitions, collect, extract, generate, aggregate: yes (CPU only)`);
  console.log(
    `  compile: ${
      tc.nvcc
        ? `CUDA sources compile${gpu ? ` for ${gpuArch(tc)}` : " (compile check only: no GPU)"}`
        : "no nvcc: CUDA solutions not runnable here"
    }; Python/Triton solutions need no build`,
  );
  console.log(
    `  verify, time: ${
      gpu
        ? "all languages on the GPU"
        : tc.python?.torch
        ? "python solutions and references on the CPU; CUDA and Triton cells are listed as not runnable here"
        : "nothing: no Python with torch (install python3-torch, or set TRACEPIPE_PYTHON)"
    }`,
  );
  const lanes = hostGpus(tc.gpus).length;
  if (lanes > 0) {
    console.log(
      `  lanes: verify runs parallel_processes judges on each of the ${lanes} GPUs above, time one ` +
        "per GPU; `reproduce --gpus 0,1` limits them, and a GPU another run holds is waited for",
    );
  }
  return 0;
}
