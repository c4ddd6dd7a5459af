/**
 * Lanes: how the judging stages spread harness jobs over the GPUs of a host, as flashinfer-bench
 * spreads solutions over its device pool.
 *
 * A lane is one serving judge at a time on one device: a GPU (the judge's CUDA_VISIBLE_DEVICES
 * names it) or, on a machine without one, the machine itself. verify runs `parallel_processes` lanes
 * per GPU, time exactly one per GPU (timing one cell per GPU at a time), compile its lanes in all,
 * spread over the GPUs (its builds land in one shared build folder). Every lane takes the next job
 * from one shared queue in the caller's order, costliest first, so a lane that finishes early takes
 * the next costliest job wherever it runs.
 *
 * A run holds a GPU's host-wide lock (gpus.ts) while any judge of it lives on that GPU. A lane whose
 * GPU another run holds waits for it, while the other lanes take the work, and says so in one line;
 * it gives up when the queue runs dry. A job that fails (a judge killed by a CUDA error) does not stop
 * its lane: the next job starts a fresh judge, and the other lanes' cells are kept.
 */
import { describeHolder, type Gpu, type LockHolder } from "../engine/mod.ts";
import { type HarnessSession, SessionPool } from "./client.ts";
import { gpuLabel, judgeEnv, laneGpus, takeGpuLock } from "./gpus.ts";
import { Heartbeat, type HeartbeatOptions } from "./heartbeat.ts";

/** Where a lane runs: its GPU (null on a machine without one) and its number among the lanes. */
export interface Lane {
  gpu: Gpu | null;
  index: number;
}

/**
 * The device of each lane (an index into the devices): `lanes` per device when `perDevice`, else
 * `lanes` in all, round-robin. Interleaved, so that the first jobs taken from the queue (the costliest)
 * go to different devices.
 */
export function assignLanes(devices: number, lanes: number, perDevice: boolean): number[] {
  const n = perDevice ? devices * lanes : lanes;
  return Array.from({ length: n }, (_, i) => i % devices);
}

/** How {@link runQueue} treats the devices its lanes run on. */
export interface QueueOptions<D> {
  /** Takes a device for this run: null once held (at once if already ours), else who keeps it. */
  hold?: (device: D) => LockHolder | null;
  /** A device as a line names it. */
  name?: (device: D) => string;
  log?: (line: string) => void;
  /** Stops taking jobs (and waiting for devices). */
  signal?: AbortSignal;
  /** How often a waiting lane tries its device again (ms). */
  pollMs?: number;
  /** How often the wait for a device is said again (ms). */
  remindMs?: number;
}

/**
 * Runs `work` over `items` in their order on lanes (`lanes[i]`: the device of lane i): one shared
 * queue, each lane taking the next item when it is free. A lane whose device is held elsewhere waits
 * for it while there is work left. A failing item does not stop its lane; the first failure (with a
 * count of the others) is thrown once every lane is done.
 */
export async function runQueue<T, D>(
  items: readonly T[],
  lanes: readonly D[],
  work: (item: T, device: D, lane: number) => Promise<void>,
  opts: QueueOptions<D> = {},
): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const told = new Map<D, number>(); // devices waited for: when the wait was last said
  const more = () => next < items.length && !opts.signal?.aborted;
  const name = (d: D) => opts.name?.(d) ?? String(d);
  const acquire = async (device: D): Promise<boolean> => {
    for (let holder = opts.hold?.(device) ?? null; holder; holder = opts.hold!(device)) {
      if (!more()) return false;
      const said = told.get(device);
      if (said === undefined || Date.now() - said >= (opts.remindMs ?? 60_000)) {
        opts.log?.(
          `${name(device)} is in use by another run (${describeHolder(holder)}); its lanes ${
            said === undefined ? "wait for it while the others take the work" : "still wait"
          }`,
        );
        told.set(device, Date.now());
      }
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 1000));
    }
    if (told.delete(device)) opts.log?.(`${name(device)} is free: its lanes join`);
    return true;
  };
  await Promise.all(lanes.map(async (device, lane) => {
    if (!await acquire(device)) return;
    while (more()) {
      const item = items[next++];
      try {
        await work(item, device, lane);
      } catch (e) {
        errors.push(e);
      }
    }
  }));
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) {
    const first = errors[0] instanceof Error ? errors[0].message : String(errors[0]);
    throw new Error(`${first} (and ${errors.length - 1} more jobs failed)`, { cause: errors });
  }
}

/** A device of this process: its serving judges, and its host-wide lock while it has any. */
interface Device {
  gpu: Gpu | null;
  pool: SessionPool;
  release: (() => void) | null;
}

/**
 * Serving harnesses shared by the judging stages of this process, per device: one stage's judges serve
 * the next (the time stage starts with a judge that verify warmed up). Idle ones never keep the
 * process alive.
 */
const DEVICES = new Map<string, Device>();

function deviceOf(gpu: Gpu | null): Device {
  const key = gpu ? gpu.uuid : "";
  let d = DEVICES.get(key);
  if (!d) {
    d = { gpu, pool: new SessionPool(gpu ? { env: judgeEnv(gpu) } : {}), release: null };
    DEVICES.set(key, d);
  }
  return d;
}

/** What the lock files of this process say of it. */
const holderCommand = () => `tp ${Deno.args.join(" ")}`.trim();

/** Takes a device's GPU lock for this process, if not held yet: null once held, else the holder. */
function hold(d: Device): LockHolder | null {
  if (!d.gpu || d.release) return null;
  const taken = takeGpuLock(d.gpu, holderCommand());
  if (typeof taken !== "function") return taken;
  d.release = taken;
  return null;
}

/** Closes a device's idle judges until `keep` are left; with none left, its GPU is free again. */
async function trimDevice(d: Device, keep: number): Promise<void> {
  await d.pool.trim(keep);
  if (d.pool.idleCount === 0) {
    d.release?.();
    d.release = null;
  }
}

// Released however the process ends normally; a killed process leaves a lock its death makes stale.
globalThis.addEventListener("unload", () => {
  for (const d of DEVICES.values()) d.release?.();
});

/** The devices lanes run on: the GPUs of the run (gpus.ts), or this machine without one. */
function devicesFor(gpus: readonly Gpu[] | undefined, log: (line: string) => void): Device[] {
  const chosen = gpus ? laneGpus(gpus, log) : [];
  return chosen.length ? chosen.map(deviceOf) : [deviceOf(null)];
}

/** How a stage shares the judging stages' serving harnesses (see {@link mapWithSessions}). */
export interface SessionUse<T = unknown> {
  /** The stage the judges prestarted by {@link prestartSharedSessions} were for: they are its to close. */
  claimsPrestarted?: boolean;
  /** No other judge may sit idle beside this stage (a timing stage: their clock monitors poll the GPU). */
  alone?: boolean;
  /** Progress lines while jobs run (cells done of all, elapsed, the jobs running): see {@link Heartbeat}. */
  progress?: HeartbeatOptions<T>;
  /** The host's GPUs (the toolchain's): lanes go on those of the run. Absent: one device, unpinned. */
  gpus?: readonly Gpu[];
  /** `lanes` per GPU (verify, time), rather than in all, spread over the GPUs (compile). */
  perGpu?: boolean;
  /** Where a wait for a GPU another run holds is said. */
  log?: (line: string) => void;
  /** Stops taking jobs and waiting for GPUs (the run's signal). */
  signal?: AbortSignal;
}

let prestarted = 0; // judges per device started ahead for a later stage's lanes: stages before it keep them

/**
 * Runs `f` over `items` on lanes ({@link runQueue}), each lane with a serving harness of its device's
 * shared pool (torch, the CUDA context and the fork server start once per lane, not once per item).
 * Afterwards each device keeps one idle judge for the next stage (or the judges prestarted for a
 * later stage) and closes the others.
 */
export async function mapWithSessions<T>(
  items: T[],
  lanes: number,
  f: (item: T, session: HarnessSession, lane: Lane) => Promise<void>,
  use: SessionUse<T> = {},
): Promise<void> {
  const log = use.log ?? use.progress?.log ?? (() => {});
  const devices = devicesFor(use.gpus, log);
  // Never more lanes than jobs: the first lanes, interleaved, spread what there is over the devices.
  const plan = assignLanes(devices.length, lanes, use.perGpu ?? false).slice(0, items.length);
  if (use.alone) {
    // Each device keeps only the judges of this stage's lanes on it (none on a GPU the stage leaves).
    prestarted = 0;
    const lanesOn = (d: Device) => plan.filter((i) => devices[i] === d).length;
    for (const d of DEVICES.values()) await trimDevice(d, lanesOn(d));
  }
  const beat = use.progress ? new Heartbeat(items, use.progress) : null;
  try {
    await runQueue(items, plan.map((i) => devices[i]), async (item, d, index) => {
      const id = beat?.start(item) ?? 0;
      try {
        await d.pool.use((session) => f(item, session, { gpu: d.gpu, index }));
      } finally {
        beat?.finish(id);
      }
    }, { hold, name: (d) => d.gpu ? gpuLabel(d.gpu) : "this machine", log, signal: use.signal });
  } finally {
    beat?.stop();
    if (use.claimsPrestarted) prestarted = 0;
    for (const d of DEVICES.values()) await trimDevice(d, Math.max(1, prestarted));
  }
}

/**
 * Starts `n` serving harnesses per device for a judging stage ahead of its first job (its prewarm,
 * while the pipeline probes its toolchain and plans): the seconds a judge takes to import torch and
 * make its CUDA context then overlap that work instead of delaying the stage's first cells. Only on
 * GPUs free now: a GPU another run holds is waited for by the stage itself. The stage claims them
 * with `claimsPrestarted`; a stage with `alone` closes them if it comes first.
 */
export async function prestartSharedSessions(n: number, gpus?: readonly Gpu[]): Promise<void> {
  prestarted = n;
  for (const d of devicesFor(gpus, () => {})) {
    if (hold(d) === null) await d.pool.prestart(n);
  }
}

/** Serving harnesses of the judging stages idle now, on every device (tests). */
export function idleSharedSessions(): number {
  return [...DEVICES.values()].reduce((n, d) => n + d.pool.idleCount, 0);
}

/** Closes the judging stages' serving harnesses and frees their GPUs (tests call it; a CLI run just exits). */
export async function closeSharedSessions(): Promise<void> {
  const all = [...DEVICES.values()];
  DEVICES.clear();
  await Promise.all(all.map((d) => d.pool.close()));
  for (const d of all) d.release?.();
}
