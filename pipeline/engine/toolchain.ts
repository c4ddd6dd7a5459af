/**
 * Toolchain discovery and fingerprints: deno, python3 (+ torch, triton), nvcc and ptxas, the GPU
 * (nvidia-smi), and Nix store paths when running inside the flake's dev shell. Each probe is
 * bounded in time and never throws: a missing tool is recorded as absent.
 */
import { realpathSync } from "node:fs";
import { findPython } from "../lib/mod.ts";
import { sha256File } from "./hash.ts";

/** A discovered program: where it is, its version line, and a digest of its binary. */
export interface Tool {
  path: string;
  version: string;
  /** sha256 of the resolved binary, used where no Nix store path pins it. */
  digest?: string;
}

/** A GPU as nvidia-smi reports it. */
export interface Gpu {
  index: number;
  name: string;
  uuid: string;
  driver: string;
  computeCapability: string;
  memoryMiB: number;
}

/** What this machine offers the pipeline. */
export interface Toolchain {
  os: string;
  arch: string;
  deno: string;
  python?: Tool & { torch?: string; triton?: string; flashinfer?: string; cudaAvailable?: boolean };
  nvcc?: Tool;
  ptxas?: Tool;
  /**
   * The host C++ compilers that decide what native sources build (one g++ warns where another
   * rejects): `cxx`, the `$CXX` or `c++` that torch's cpp_extension runs, and `gxx`, the `g++`
   * that nvcc uses as its host compiler and the harness runs for C ABI and compile-check builds.
   */
  hostCompilers?: { cxx?: Tool; gxx?: Tool };
  gpus: Gpu[];
  /** Set inside `nix develop`: the dev shell's store paths, which pin everything by themselves. */
  nix?: { storePaths: string[] };
}

/** Runs a command with a time limit; returns stdout or null when it fails or is absent. */
export async function tryRun(
  cmd: string,
  args: string[],
  timeoutMs = 10_000,
): Promise<string | null> {
  try {
    const out = await new Deno.Command(cmd, {
      args,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(timeoutMs),
    }).output();
    if (!out.success) return null;
    return new TextDecoder().decode(out.stdout).trim();
  } catch {
    return null;
  }
}

function which(cmd: string): string | null {
  if (cmd.includes("/")) {
    try {
      return Deno.statSync(cmd).isFile ? cmd : null;
    } catch {
      return null;
    }
  }
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!dir) continue;
    const p = `${dir}/${cmd}`;
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  return null;
}

function digestOf(path: string): string | undefined {
  try {
    return sha256File(realpathSync(path));
  } catch {
    return undefined;
  }
}

async function probePython(withCuda: boolean): Promise<Toolchain["python"]> {
  const py = await findPython();
  if (!py) return undefined;
  // Versions come from package metadata; torch is imported only to ask about CUDA on a GPU host.
  const script = [
    "import json, sys, importlib.metadata as md",
    "r = {'version': sys.version.split()[0], 'path': sys.executable}",
    "for key, dist in (('torch', 'torch'), ('triton', 'triton'), ('flashinfer', 'flashinfer-python')):",
    "    try: r[key] = md.version(dist)",
    "    except Exception: pass",
    ...(withCuda
      ? [
        "try:\n import torch; r['cuda'] = torch.cuda.is_available()",
        "except Exception: r['cuda'] = False",
      ]
      : ["r['cuda'] = False"]),
    "print(json.dumps(r))",
  ].join("\n");
  const out = await tryRun(py, ["-c", script], 60_000);
  if (!out) return undefined;
  const r = JSON.parse(out);
  return {
    path: r.path,
    version: `Python ${r.version}`,
    digest: digestOf(r.path),
    torch: r.torch,
    triton: r.triton,
    flashinfer: r.flashinfer,
    cudaAvailable: r.cuda,
  };
}

async function probeTool(
  cmd: string,
  versionArgs: string[],
  versionLine: "first" | "last" = "last",
): Promise<Tool | undefined> {
  const path = which(cmd);
  if (!path) return undefined;
  const out = await tryRun(path, versionArgs);
  if (out === null) return undefined;
  const lines = out.split("\n").filter((l) => l.trim());
  return {
    path: realpathSync(path),
    version: (versionLine === "first" ? lines[0] : lines[lines.length - 1]) ?? "",
    digest: digestOf(path),
  };
}

/**
 * The host C++ compilers on this PATH (see {@link Toolchain.hostCompilers}): `$CXX` (else `c++`)
 * and `g++`, each with its resolved path, the first line of `--version` and its binary's digest.
 */
export async function probeHostCompilers(): Promise<NonNullable<Toolchain["hostCompilers"]>> {
  const cxxCmd = Deno.env.get("CXX")?.trim().split(/\s+/)[0] || "c++";
  const [cxx, gxx] = await Promise.all([
    probeTool(cxxCmd, ["--version"], "first"),
    probeTool("g++", ["--version"], "first"),
  ]);
  return { ...(cxx ? { cxx } : {}), ...(gxx ? { gxx } : {}) };
}

let gpuProbe: Promise<Gpu[]> | null = null;

/** The GPUs `nvidia-smi` lists (none without it), probed once per process. */
export function probeGpusOnce(): Promise<Gpu[]> {
  gpuProbe ??= probeGpus();
  return gpuProbe;
}

async function probeGpus(): Promise<Gpu[]> {
  const out = await tryRun("nvidia-smi", [
    "--query-gpu=index,name,uuid,driver_version,compute_cap,memory.total",
    "--format=csv,noheader,nounits",
  ]);
  if (!out) return [];
  return out.split("\n").filter(Boolean).map((line) => {
    const [index, name, uuid, driver, cc, mem] = line.split(",").map((s) => s.trim());
    return {
      index: Number(index),
      name,
      uuid,
      driver,
      computeCapability: cc,
      memoryMiB: Number(mem),
    };
  });
}

function nvccPath(): string {
  const cudaHome = Deno.env.get("CUDA_HOME") ?? Deno.env.get("CUDA_PATH");
  if (cudaHome) return `${cudaHome}/bin/nvcc`;
  for (const p of ["/usr/local/cuda/bin/nvcc", "/usr/local/cuda-13.0/bin/nvcc"]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* absent */ }
  }
  return "nvcc";
}

/** Probes everything in parallel; a few seconds on a machine with Python and torch. */
export async function discoverToolchain(): Promise<Toolchain> {
  const nvcc = nvccPath();
  const ptxas = nvcc.replace(/nvcc$/, "ptxas");
  const gpus = await probeGpusOnce();
  const [python, nvccTool, ptxasTool, hostCompilers] = await Promise.all([
    probePython(gpus.length > 0),
    probeTool(nvcc, ["--version"]),
    probeTool(ptxas, ["--version"]),
    probeHostCompilers(),
  ]);
  const nixPaths = (Deno.env.get("TRACEPIPE_NIX_STORE_PATHS") ?? "").split(":").filter(Boolean);
  return {
    os: Deno.build.os,
    arch: Deno.build.arch,
    deno: Deno.version.deno,
    python,
    nvcc: nvccTool,
    ptxas: ptxasTool,
    hostCompilers,
    gpus,
    nix: Deno.env.get("IN_NIX_SHELL") ? { storePaths: nixPaths } : undefined,
  };
}

/** The sm_XX target for the first GPU ("sm_90a" on Hopper), or null without a GPU. */
export function gpuArch(tc: Toolchain): string | null {
  const cc = tc.gpus[0]?.computeCapability;
  if (!cc) return null;
  const [major, minor] = cc.split(".");
  const arch = `sm_${major}${minor ?? "0"}`;
  // Hopper's wgmma/TMA instructions need the arch-specific "a" target.
  return major === "9" ? `${arch}a` : arch;
}

const hostFact = (t: Tool | undefined) =>
  t ? { path: t.path, version: t.version, digest: t.digest ?? null } : null;

/**
 * Toolchain facts for compile cells (and, through {@link hardwareFacts}, for verify and time, which
 * load what compile built): under Nix the store paths pin everything.
 */
export function compileFacts(tc: Toolchain): Record<string, unknown> {
  if (tc.nix) return { nix: tc.nix.storePaths, arch: gpuArch(tc) };
  return {
    nvcc: tc.nvcc ? { version: tc.nvcc.version, digest: tc.nvcc.digest } : null,
    ptxas: tc.ptxas ? { version: tc.ptxas.version, digest: tc.ptxas.digest } : null,
    hostCompiler: {
      cxx: hostFact(tc.hostCompilers?.cxx),
      gxx: hostFact(tc.hostCompilers?.gxx),
    },
    python: tc.python?.version ?? null,
    torch: tc.python?.torch ?? null,
    triton: tc.python?.triton ?? null,
    flashinfer: tc.python?.flashinfer ?? null,
    arch: gpuArch(tc),
  };
}

/** Toolchain facts for verify/time cells: compile facts plus the GPU model and driver. */
export function hardwareFacts(tc: Toolchain): Record<string, unknown> {
  const gpu = tc.gpus[0];
  return {
    ...compileFacts(tc),
    gpu: gpu ? { name: gpu.name, driver: gpu.driver, cc: gpu.computeCapability } : "cpu",
  };
}
