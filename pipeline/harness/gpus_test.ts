/**
 * The GPUs a run judges on (a fake list on this CPU machine, `--gpus`, one model per run) and the
 * host-wide per-GPU lock: two holders exclude each other, a dead holder's lock is taken over.
 */
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import type { Gpu } from "../engine/mod.ts";
import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import * as gpus from "./gpus.ts";
import { fakeGpuEnv, withEnv } from "./testdata/lanes.ts";

const gpu = (index: number, name = "H100"): Gpu => ({
  index,
  name,
  uuid: `GPU-${index}`,
  driver: "d",
  computeCapability: "9.0",
  memoryMiB: 81559,
});
const HOST = [gpu(0), gpu(1), gpu(2), gpu(3)];

/** `f` refuses with a gpus.GpuSelectionError whose one line starts with `line`. */
function refused(f: () => unknown, line: string) {
  const e = assertThrows(f);
  assert(e instanceof gpus.GpuSelectionError, `${e}`);
  assert(!e.message.includes("\n"), e.message);
  assertEquals(e.message.slice(0, line.length), line);
}

Deno.test("the fake GPU list stands in for nvidia-smi's; CUDA_VISIBLE_DEVICES limits the real one", () => {
  const fake = gpus.hostGpus([], { [gpus.FAKE_GPUS_ENV]: "0:H100:81559, 1:H100" });
  assertEquals(fake.map((g) => [g.index, g.name, g.memoryMiB]), [[0, "H100", 81559], [
    1,
    "H100",
    0,
  ]]);
  assertEquals(gpus.hostGpus(HOST, {}).length, 4);
  assertEquals(gpus.hostGpus(HOST, { CUDA_VISIBLE_DEVICES: "1,GPU-3" }).map((g) => g.index), [
    1,
    3,
  ]);
  refused(
    () => gpus.hostGpus([], { [gpus.FAKE_GPUS_ENV]: "0:H100,H100" }),
    `${gpus.FAKE_GPUS_ENV}: "H100" is not index:name[:MiB]`,
  );
});

Deno.test("--gpus: a list of the host's indices; anything else is one line saying what is here", () => {
  assertEquals(gpus.parseGpuSelection("2, 0,2", HOST), [2, 0]);
  refused(
    () => gpus.parseGpuSelection("0,x", HOST),
    '--gpus: "x" is not a GPU index (expected a list such as 0,1; GPUs here: 0, 1, 2, 3)',
  );
  refused(() => gpus.parseGpuSelection("", HOST), '--gpus: "" is not a GPU index');
  refused(
    () => gpus.parseGpuSelection("4", HOST),
    "--gpus: GPU 4 is not on this host (GPUs here: 0, 1, 2, 3)",
  );
  refused(
    () => gpus.parseGpuSelection("0", []),
    "--gpus: GPU 0 is not on this host (this host has none: nvidia-smi lists no GPU)",
  );
});

Deno.test("lanes go on the chosen GPUs of the model the keys name; another model is left out or refused", () => {
  assertEquals(gpus.laneGpus(HOST, () => {}, {}).map((g) => g.index), [0, 1, 2, 3]);
  assertEquals(gpus.laneGpus(HOST, () => {}, { [gpus.GPUS_ENV]: "1,3" }).map((g) => g.index), [
    1,
    3,
  ]);
  assertEquals(
    gpus.laneGpus([], () => {}, {}),
    [],
    "no GPU: no lane GPU (one lane device, unpinned)",
  );
  assertEquals(
    gpus.laneGpus(HOST, () => {}, { TRACEPIPE_FAKE_GPUS: "0:A100,1:A100" }).map((g) => g.name),
    ["A100", "A100"],
    "a fake list stands alone, even on a GPU host",
  );
  const mixed = [gpu(0), gpu(1, "A100"), gpu(2)];
  const lines: string[] = [];
  assertEquals(gpus.laneGpus(mixed, (l) => lines.push(l), {}).map((g) => g.index), [0, 2]);
  assertEquals(lines, ["left out GPU 1 (A100): the cell keys name GPU 0's model (H100)"]);
  refused(
    () => gpus.laneGpus(mixed, () => {}, { [gpus.GPUS_ENV]: "0,1" }),
    "--gpus: GPU 1 (A100) is not the model the cell keys name (GPU 0's, H100): judge one model",
  );
});

Deno.test("a judge is pinned by UUID (CUDA's order is not nvidia-smi's), a fake GPU by index", () => {
  assertEquals(gpus.judgeEnv(gpu(3)), { CUDA_VISIBLE_DEVICES: "GPU-3" });
  const [fake] = gpus.hostGpus([], { [gpus.FAKE_GPUS_ENV]: "5:H100" });
  assertEquals(gpus.judgeEnv(fake), { CUDA_VISIBLE_DEVICES: "5" });
});

Deno.test("per-GPU locks: a second holder is refused while the first lives, and gets it after", () => {
  const { env, lockDir } = fakeGpuEnv("0:H100,1:H100");
  return withEnv(env, () => {
    const [g0, g1] = gpus.hostGpus([]);
    const first = gpus.takeGpuLock(g0, "tp reproduce --gpus 0");
    assert(typeof first === "function", "the first run takes GPU 0");
    const second = gpus.takeGpuLock(g0, "tp reproduce");
    assert(typeof second !== "function", "a second run on GPU 0 is refused");
    assertEquals([second.pid, second.command], [Deno.pid, "tp reproduce --gpus 0"]);
    assertEquals(gpus.gpuLockHolder(g0)?.command, "tp reproduce --gpus 0");
    const other = gpus.takeGpuLock(g1);
    assert(typeof other === "function", "GPU 1 is free meanwhile");
    other();
    first();
    assertEquals(gpus.gpuLockHolder(g0), null);
    const again = gpus.takeGpuLock(g0);
    assert(typeof again === "function", "free again once released");
    first(); // a release that is no longer ours removes nothing
    assert(gpus.gpuLockHolder(g0) !== null, "the stale release left the new holder's lock alone");
    again();
    assertEquals(readdirSync(lockDir), []);
    return Promise.resolve();
  });
});

Deno.test("per-GPU locks: a lock left by a dead process is taken over", async () => {
  const { env, lockDir } = fakeGpuEnv("0:H100");
  const dead = new Deno.Command("true").spawn();
  await dead.status;
  await withEnv(env, () => {
    const [g0] = gpus.hostGpus([]);
    const path = join(lockDir, "fake-0.lock");
    writeFileSync(path, JSON.stringify({ pid: dead.pid, host: hostname(), startedAt: "then" }));
    assertEquals(gpus.gpuLockHolder(g0), null, "a dead holder holds nothing");
    const taken = gpus.takeGpuLock(g0, "tp reproduce");
    assert(typeof taken === "function", "the stale lock is taken over");
    assertEquals(gpus.gpuLockHolder(g0)?.pid, Deno.pid);
    taken();
    assert(!existsSync(path));
    return Promise.resolve();
  });
});

Deno.test("the lock folder defaults to one host-wide folder under the temp dir", () => {
  return withEnv({ [gpus.GPU_LOCK_DIR_ENV]: undefined, [gpus.FAKE_GPUS_ENV]: "7:H100" }, () => {
    const [g7] = gpus.hostGpus([]);
    const release = gpus.takeGpuLock(g7);
    assert(typeof release === "function");
    const path = join(tmpdir(), "tracepipe-gpu-locks", "fake-7.lock");
    assert(existsSync(path), path);
    release();
    assert(!existsSync(path));
    return Promise.resolve();
  });
});
