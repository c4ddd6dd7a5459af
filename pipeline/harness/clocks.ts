/**
 * Locked GPU clocks for timing, opt-in (`reproduce --lock-clocks`). A GPU boosts and throttles its
 * clocks with load, power and temperature, which moves medians between runs; locking the SM and
 * memory clocks at their maximum (`nvidia-smi -lgc max,max` and `-lmc max,max`) takes the boost
 * decisions out. It needs root (or an administrator's permission) on most machines: where it is
 * refused, timing goes on as without the flag (the judge logs the clocks of every cell), with the
 * reason recorded. The clocks are reset afterwards, and by the reaper if the process dies first.
 */
import { atProcessExit, type Gpu } from "../engine/mod.ts";

/** Set to "1" by `reproduce --lock-clocks`; the time stage declares it, so it enters time's keys only when set. */
export const LOCK_CLOCKS_ENV = "TRACEPIPE_LOCK_CLOCKS";

/** One GPU's clock lock. */
export interface GpuClockLock {
  index: number;
  /** The SM clock asked for and whether `-lgc` took it, in MHz. */
  smMHz: number | null;
  smLocked: boolean;
  /** The memory clock asked for and whether `-lmc` took it, in MHz. */
  memMHz: number | null;
  memLocked: boolean;
  /** Why something was not locked (nvidia-smi's own words). */
  reason?: string;
}

/** What a time cell records of the clocks it was timed under. */
export interface ClockState {
  /** Every GPU used has its SM clock locked. */
  held: boolean;
  gpus: GpuClockLock[];
  /** Why the lock does not hold (no GPU, no nvidia-smi, not permitted). */
  reason?: string;
}

/** A lock taken by {@link lockClocks}; `release` resets what it locked. */
export interface ClockLock {
  state: ClockState;
  release(): Promise<void>;
}

async function smi(bin: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  try {
    const out = await new Deno.Command(bin, {
      args,
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(30_000),
    }).output();
    const dec = new TextDecoder();
    const text = (dec.decode(out.stdout) + dec.decode(out.stderr)).trim();
    return { ok: out.success, text };
  } catch (e) {
    return { ok: false, text: (e as Error).message };
  }
}

const firstLine = (t: string) => t.split("\n").find((l) => l.trim())?.trim() ?? "no output";

/** The GPUs this process's CUDA sees (CUDA_VISIBLE_DEVICES by index or UUID), else all. */
export function visibleGpus(gpus: Gpu[], visible = Deno.env.get("CUDA_VISIBLE_DEVICES")): Gpu[] {
  if (visible === undefined || visible.trim() === "") return gpus;
  const ids = visible.split(",").map((s) => s.trim());
  return gpus.filter((g) => ids.includes(String(g.index)) || ids.some((id) => g.uuid === id));
}

/**
 * Locks the SM and memory clocks of the GPUs used at their maximum. Never throws: what could not
 * be locked is in the state, with nvidia-smi's reason. `nvidiaSmi` is the program to run (default:
 * `nvidia-smi` on PATH); `visibleDevices` stands in for CUDA_VISIBLE_DEVICES.
 */
export async function lockClocks(
  gpus: Gpu[],
  opts: { nvidiaSmi?: string; log?: (msg: string) => void; visibleDevices?: string } = {},
): Promise<ClockLock> {
  const log = opts.log ?? (() => {});
  const bin = opts.nvidiaSmi ?? "nvidia-smi";
  const used = visibleGpus(gpus, opts.visibleDevices ?? Deno.env.get("CUDA_VISIBLE_DEVICES"));
  const undo: Array<{ argv: string[]; forget: () => void }> = [];
  const release = async () => {
    for (const u of undo.splice(0).reverse()) {
      const r = await smi(u.argv[0], u.argv.slice(1));
      if (!r.ok) {
        log(`could not reset the clocks (${u.argv.slice(1).join(" ")}): ${firstLine(r.text)}`);
      }
      u.forget();
    }
  };
  if (used.length === 0) {
    const state = { held: false, gpus: [], reason: "no GPU: nothing to lock" };
    log(`clocks not locked: ${state.reason}`);
    return { state, release };
  }
  const locks: GpuClockLock[] = [];
  for (const g of used) {
    const i = String(g.index);
    const q = await smi(bin, [
      "-i",
      i,
      "--query-gpu=clocks.max.sm,clocks.max.mem",
      "--format=csv,noheader,nounits",
    ]);
    const [sm, mem] = q.ok ? q.text.split(",").map((s) => Number(s.trim())) : [NaN, NaN];
    const lock: GpuClockLock = {
      index: g.index,
      smMHz: Number.isFinite(sm) ? sm : null,
      smLocked: false,
      memMHz: Number.isFinite(mem) ? mem : null,
      memLocked: false,
    };
    locks.push(lock);
    if (lock.smMHz === null) {
      lock.reason = `cannot read the maximum clocks: ${firstLine(q.text)}`;
      continue;
    }
    const tryLock = async (flag: string, mhz: number, reset: string) => {
      const r = await smi(bin, ["-i", i, flag, `${mhz},${mhz}`]);
      if (!r.ok) return firstLine(r.text);
      // Registered before anything else can fail: the reaper resets it if this process dies.
      const argv = [bin, "-i", i, reset];
      undo.push({ argv, forget: atProcessExit(argv) });
      return null;
    };
    const smErr = await tryLock("-lgc", lock.smMHz, "-rgc");
    lock.smLocked = smErr === null;
    // Without the SM clock a memory lock alone buys nothing: leave it as it is.
    const memErr = smErr !== null
      ? null
      : lock.memMHz === null
      ? "cannot read the maximum memory clock"
      : await tryLock("-lmc", lock.memMHz, "-rmc");
    lock.memLocked = smErr === null && memErr === null;
    const reasons = [
      ...(smErr ? [`-lgc: ${smErr}`] : []),
      ...(memErr ? [`-lmc: ${memErr}`] : []),
    ];
    if (reasons.length) lock.reason = reasons.join("; ");
  }
  const held = locks.every((l) => l.smLocked);
  const state: ClockState = {
    held,
    gpus: locks,
    ...(held ? {} : { reason: locks.find((l) => !l.smLocked)?.reason ?? "not locked" }),
  };
  for (const l of locks) {
    log(
      l.smLocked
        ? `GPU ${l.index}: clocks locked at SM ${l.smMHz} MHz` +
          (l.memLocked ? `, memory ${l.memMHz} MHz` : ` (memory not locked: ${l.reason})`)
        : `GPU ${l.index}: clocks not locked (${l.reason}); timing with the clocks as they are (logged per cell)`,
    );
  }
  return { state, release };
}
