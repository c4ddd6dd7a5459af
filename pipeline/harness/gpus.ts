/**
 * The GPUs a run judges on, and the host-wide lock that keeps each of them to one run.
 *
 * Which GPUs: the host's (the toolchain's nvidia-smi list, or `TRACEPIPE_FAKE_GPUS` on a machine
 * without one, for tests), those this process may see (`CUDA_VISIBLE_DEVICES`, as Slurm sets it),
 * of the model the cell keys name (GPU 0's: a lane on another model would time another machine),
 * limited by `reproduce --gpus 0,1` (`TRACEPIPE_GPUS`). Which GPU ran a cell is provenance, never
 * key: the selection enters no cell key.
 *
 * The lock: one file per GPU in a host-wide folder (`<tmpdir>/tracepipe-gpu-locks`, or
 * `TRACEPIPE_GPU_LOCK_DIR`), named by the GPU's UUID (indices are renumbered under cgroups, UUIDs
 * are not), taken and released as the store lock is (pid, host and start time of the holder; stale
 * once its process is dead).
 */
import { chmodSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Gpu, type LockHolder, Store } from "../engine/mod.ts";
import { visibleGpus } from "./clocks.ts";

/** `0:H100,1:H100[:MiB]`: GPUs to lay lanes on where nvidia-smi lists none (tests, CPU machines). */
export const FAKE_GPUS_ENV = "TRACEPIPE_FAKE_GPUS";
/** The indices `reproduce --gpus` chose (`0,1`); absent: every GPU of the host. */
export const GPUS_ENV = "TRACEPIPE_GPUS";
/** Where the per-GPU lock files live (default: `<tmpdir>/tracepipe-gpu-locks`). */
export const GPU_LOCK_DIR_ENV = "TRACEPIPE_GPU_LOCK_DIR";

/** A `--gpus` value or a GPU list that cannot be used: one line naming the flag and the reason. */
export class GpuSelectionError extends Error {}

/** The GPUs `TRACEPIPE_FAKE_GPUS` describes (`index:name[:memoryMiB]`, comma-separated). */
export function parseFakeGpus(spec: string): Gpu[] {
  return spec.split(",").map((s) => s.trim()).filter(Boolean).map((entry) => {
    const [index, name, mem] = entry.split(":").map((s) => s.trim());
    if (!/^\d+$/.test(index ?? "") || !name) {
      throw new GpuSelectionError(
        `${FAKE_GPUS_ENV}: "${entry}" is not index:name[:MiB] (e.g. 0:H100,1:H100)`,
      );
    }
    return {
      index: Number(index),
      name,
      uuid: `fake-${index}`,
      driver: "fake",
      computeCapability: "",
      memoryMiB: Number(mem ?? 0) || 0,
    };
  });
}

/** Whether a GPU is one `TRACEPIPE_FAKE_GPUS` made up (its judges see CUDA_VISIBLE_DEVICES=index). */
const isFake = (g: Gpu) => g.uuid === `fake-${g.index}`;

/**
 * The host's GPUs this process may use: the fake list when `TRACEPIPE_FAKE_GPUS` is set, else the
 * toolchain's (`found`) that `CUDA_VISIBLE_DEVICES` leaves visible.
 */
export function hostGpus(found: readonly Gpu[], env = Deno.env.toObject()): Gpu[] {
  const fake = env[FAKE_GPUS_ENV];
  if (fake) return parseFakeGpus(fake);
  return visibleGpus([...found], env.CUDA_VISIBLE_DEVICES);
}

/**
 * The indices a `--gpus` value names, checked against `host`: `0,2` → [0, 2]. A value that is not a
 * list of indices, or names a GPU the host lacks, is a {@link GpuSelectionError}.
 */
export function parseGpuSelection(spec: string, host: readonly Gpu[]): number[] {
  const here = host.length
    ? `GPUs here: ${host.map((g) => g.index).join(", ")}`
    : "this host has none: nvidia-smi lists no GPU";
  const parts = spec.split(",").map((s) => s.trim());
  const bad = parts.find((p) => !/^\d+$/.test(p));
  if (bad !== undefined) {
    throw new GpuSelectionError(
      `--gpus: "${bad}" is not a GPU index (expected a list such as 0,1; ${here})`,
    );
  }
  const indices = [...new Set(parts.map(Number))];
  const missing = indices.find((i) => !host.some((g) => g.index === i));
  if (missing !== undefined) {
    throw new GpuSelectionError(`--gpus: GPU ${missing} is not on this host (${here})`);
  }
  return indices;
}

/** `GPU 1 (H100)`: a GPU as progress lines name it. */
export const gpuLabel = (gpu: Gpu) => `GPU ${gpu.index} (${gpu.name})`;

/**
 * The GPUs a judging stage lays its lanes on: {@link hostGpus}, limited to `TRACEPIPE_GPUS` when set,
 * and to GPU 0's model (the one the cell keys name; `log` says which others are left out). None on a
 * machine without a GPU.
 */
export function laneGpus(
  found: readonly Gpu[],
  log: (line: string) => void = () => {},
  env = Deno.env.toObject(),
): Gpu[] {
  const host = hostGpus(found, env);
  const chosen = env[GPUS_ENV] ? parseGpuSelection(env[GPUS_ENV], host) : null;
  // The keys name the toolchain's GPU 0 (hardwareFacts), hidden or not; a fake list stands alone.
  const keyed = (env[FAKE_GPUS_ENV] ? host : found)[0]?.name;
  const picked = host.filter((g) => !chosen || chosen.includes(g.index));
  const other = picked.filter((g) => g.name !== keyed);
  if (other.length && chosen) {
    throw new GpuSelectionError(
      `--gpus: ${gpuLabel(other[0])} is not the model the cell keys name (GPU 0's, ${keyed}): ` +
        "judge one model per run",
    );
  }
  if (other.length) {
    log(`left out ${other.map(gpuLabel).join(", ")}: the cell keys name GPU 0's model (${keyed})`);
  }
  return picked.filter((g) => g.name === keyed);
}

/**
 * The environment of a judge pinned to `gpu`: CUDA_VISIBLE_DEVICES by UUID, since CUDA numbers
 * devices fastest first, not in nvidia-smi's PCI order (a fake GPU by its index).
 */
export function judgeEnv(gpu: Gpu): Record<string, string> {
  return { CUDA_VISIBLE_DEVICES: isFake(gpu) ? String(gpu.index) : gpu.uuid };
}

/** The host-wide folder of the per-GPU lock files (made writable by every user, as /tmp is). */
export function gpuLockDir(env = Deno.env.toObject()): string {
  const dir = env[GPU_LOCK_DIR_ENV] || join(tmpdir(), "tracepipe-gpu-locks");
  mkdirSync(dir, { recursive: true });
  try {
    chmodSync(dir, 0o1777);
  } catch { /* another user's folder: it is already open to us, or the lock says why not */ }
  return dir;
}

const lockPath = (gpu: Gpu) =>
  join(gpuLockDir(), `${gpu.uuid.replace(/[^A-Za-z0-9._-]/g, "_")}.lock`);

/**
 * Takes `gpu`'s host-wide lock: the release function, or the live holder (another run on this host,
 * or another lane holder in this process) that keeps it. A dead holder's lock is taken over.
 */
export function takeGpuLock(gpu: Gpu, command?: string): (() => void) | LockHolder {
  return Store.takeLockFile(lockPath(gpu), command ? { command } : {});
}

/** Who holds `gpu`'s lock now (null: free, or held by a process that died). */
export function gpuLockHolder(gpu: Gpu): LockHolder | null {
  return Store.lockFileHolder(lockPath(gpu));
}

/** What a cell's provenance records of the GPU that judged it (never its key). */
export const gpuProvenance = (gpu: Gpu) => ({ index: gpu.index, name: gpu.name, uuid: gpu.uuid });
