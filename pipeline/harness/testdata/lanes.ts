/**
 * Test support for the GPU lanes on a machine without a GPU: environment variables set for the span
 * of a test, a fake GPU list with a lock folder of its own, and a stand-in judge that says which GPU
 * it was pinned to.
 */
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FAKE_GPUS_ENV, GPU_LOCK_DIR_ENV, GPUS_ENV } from "../mod.ts";

/** Runs `f` with these env vars set (undefined: unset), restoring them afterwards. */
export async function withEnv<T>(
  vars: Record<string, string | undefined>,
  f: () => Promise<T>,
): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  const put = (k: string, v: string | undefined) =>
    v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  for (const [k, v] of Object.entries(vars)) put(k, v);
  try {
    return await f();
  } finally {
    for (const [k, v] of Object.entries(saved)) put(k, v);
  }
}

/**
 * The env of a host with these fake GPUs (`0:H100,1:H100`), a lock folder no other test shares, and no
 * `--gpus` choice; `lockDir` is that folder.
 */
export function fakeGpuEnv(
  gpus: string,
): { env: Record<string, string | undefined>; lockDir: string } {
  const lockDir = mkdtempSync(join(tmpdir(), "tp-gpu-locks-"));
  return {
    env: { [FAKE_GPUS_ENV]: gpus, [GPU_LOCK_DIR_ENV]: lockDir, [GPUS_ENV]: undefined },
    lockDir,
  };
}

/** A stand-in judge: its program, and what each of its processes saw (pid → CUDA_VISIBLE_DEVICES). */
export interface FakeJudge {
  python: string;
  seen: () => Map<number, string>;
}

/**
 * A stand-in for the judge (`TRACEPIPE_PYTHON` points at it): it appends `<pid> <CUDA_VISIBLE_DEVICES>`
 * to a log and idles until its input closes. `seen()` reads the log: pid → the GPU the judge saw.
 */
export function fakeJudge(): FakeJudge {
  const dir = mkdtempSync(join(tmpdir(), "tp-fake-judge-"));
  const log = join(dir, "env.log");
  const python = join(dir, "python3");
  writeFileSync(log, "");
  writeFileSync(
    python,
    `#!/bin/sh\necho "$$ \${CUDA_VISIBLE_DEVICES-unset}" >> '${log}'\nexec cat > /dev/null\n`,
  );
  chmodSync(python, 0o755);
  return {
    python,
    seen: () =>
      new Map(
        readFileSync(log, "utf8").trim().split("\n").filter(Boolean).map((l) => {
          const [pid, gpu] = l.split(" ");
          return [Number(pid), gpu];
        }),
      ),
  };
}

/** Runs `f` on a host with these fake GPUs, a lock folder of its own and a {@link fakeJudge} as judge. */
export function onFakeGpus<T>(
  gpus: string,
  f: (host: { judge: FakeJudge; lockDir: string }) => Promise<T>,
): Promise<T> {
  const judge = fakeJudge();
  const { env, lockDir } = fakeGpuEnv(gpus);
  return withEnv({ ...env, TRACEPIPE_PYTHON: judge.python }, () => f({ judge, lockDir }));
}
