/**
 * `reproduce --lock-clocks` on the CPU, against a fake `nvidia-smi` that records its arguments (never
 * a real GPU: the clocks of a lent machine are left as they are): the SM and memory clocks are locked
 * at their maximum and reset afterwards, also by the reaper when the process is killed; where locking
 * is refused, the run goes on with the reason recorded.
 */
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import { REPO_ROOT } from "../engine/mod.ts";
import { FAKE_GPU } from "../engine/testdata/engine_stages.ts";
import { lockClocks, visibleGpus } from "./clocks.ts";

/** A fake nvidia-smi logging each call's arguments to `<dir>/calls`; `permitted` decides -lgc/-lmc. */
function fakeSmi(permitted: boolean): { bin: string; calls: () => string[] } {
  const dir = mkdtempSync(join(tmpdir(), "tp-fake-smi-"));
  const bin = join(dir, "nvidia-smi");
  writeFileSync(
    bin,
    `#!/bin/sh
echo "$*" >> "${dir}/calls"
case "$*" in
  *--query-gpu=clocks.max.sm,clocks.max.mem*) echo "1980, 2619" ;;
  *-lgc*|*-lmc*) ${
      permitted
        ? 'echo "GPU clocks set for GPU 00000000:19:00.0."'
        : 'echo "Insufficient Permissions. Are you running as root?"; exit 4'
    } ;;
  *-rgc*|*-rmc*) echo "All done." ;;
esac
`,
  );
  chmodSync(bin, 0o755);
  const calls = () =>
    existsSync(join(dir, "calls"))
      ? readFileSync(join(dir, "calls"), "utf8").trim().split("\n")
      : [];
  return { bin, calls };
}

Deno.test("--lock-clocks locks the SM and memory clocks at their maximum and resets them after", async () => {
  const smi = fakeSmi(true);
  const logs: string[] = [];
  const lock = await lockClocks([FAKE_GPU], {
    nvidiaSmi: smi.bin,
    log: (m) => logs.push(m),
    visibleDevices: "",
  });
  assertEquals(lock.state, {
    held: true,
    gpus: [{ index: 0, smMHz: 1980, smLocked: true, memMHz: 2619, memLocked: true }],
  });
  assertEquals(smi.calls(), [
    "-i 0 --query-gpu=clocks.max.sm,clocks.max.mem --format=csv,noheader,nounits",
    "-i 0 -lgc 1980,1980",
    "-i 0 -lmc 2619,2619",
  ]);
  assertMatch(logs.join("\n"), /GPU 0: clocks locked at SM 1980 MHz, memory 2619 MHz/);
  await lock.release();
  assertEquals(smi.calls().slice(3), ["-i 0 -rmc", "-i 0 -rgc"]);
  await lock.release(); // twice: nothing more to reset
  assertEquals(smi.calls().length, 5);
});

Deno.test("where locking is not permitted, timing goes on as before with the reason recorded", async () => {
  const smi = fakeSmi(false);
  const logs: string[] = [];
  const lock = await lockClocks([FAKE_GPU], {
    nvidiaSmi: smi.bin,
    log: (m) => logs.push(m),
    visibleDevices: "",
  });
  assertEquals(lock.state.held, false);
  assertMatch(lock.state.reason ?? "", /-lgc: Insufficient Permissions/);
  assertEquals(lock.state.gpus[0].memLocked, false);
  assert(!smi.calls().some((c) => c.includes("-lmc")), "no memory lock without the SM lock");
  assertMatch(logs.join("\n"), /clocks not locked .*Insufficient Permissions.*as they are/);
  await lock.release();
  assert(!smi.calls().some((c) => /-r[gm]c/.test(c)), "nothing to reset");
  const none = await lockClocks([], { nvidiaSmi: smi.bin, visibleDevices: "" });
  assertEquals([none.state.held, none.state.reason], [false, "no GPU: nothing to lock"]);
});

Deno.test("only the GPUs CUDA sees are locked", () => {
  const g1 = { ...FAKE_GPU, index: 1, uuid: "GPU-b" };
  assertEquals(visibleGpus([FAKE_GPU, g1], undefined).length, 2);
  assertEquals(visibleGpus([FAKE_GPU, g1], "1"), [g1]);
  assertEquals(visibleGpus([FAKE_GPU, g1], "GPU-b"), [g1]);
});

Deno.test("a process killed while the clocks are locked has them reset by the reaper", async () => {
  if (!existsSync("/proc/self/environ")) {
    console.log("skipped: no /proc, so no reaper on this system");
    return;
  }
  const smi = fakeSmi(true);
  const code = `
    import { startReaper } from ${JSON.stringify(join(REPO_ROOT, "pipeline/engine/mod.ts"))};
    import { lockClocks } from ${JSON.stringify(join(REPO_ROOT, "pipeline/harness/mod.ts"))};
    import { FAKE_GPU } from ${
    JSON.stringify(join(REPO_ROOT, "pipeline/engine/testdata/engine_stages.ts"))
  };
    startReaper();
    await lockClocks([FAKE_GPU], { nvidiaSmi: ${JSON.stringify(smi.bin)}, visibleDevices: "" });
    Deno.kill(Deno.pid, "SIGKILL");
  `;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    env: { CUDA_VISIBLE_DEVICES: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.signal, "SIGKILL", new TextDecoder().decode(out.stderr));
  for (let i = 0; i < 100 && smi.calls().length < 5; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assertEquals(smi.calls().slice(3).sort(), ["-i 0 -rgc", "-i 0 -rmc"]);
});
