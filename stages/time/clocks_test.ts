/**
 * The time stage under `reproduce --lock-clocks`, on the CPU with real PyTorch and a fake
 * `nvidia-smi` first on PATH (never a real GPU's clocks): the clocks are locked before the stage
 * times and reset after it, and each time cell records the lock's state in its provenance and its
 * timing.json. Without the flag the time cells' keys and outputs are what they were.
 */
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { discoverToolchain, REPO_ROOT, runPipeline, Store } from "../../pipeline/engine/mod.ts";
import { stageEnv } from "../../pipeline/engine/dag.ts";
import { FAKE_GPU } from "../../pipeline/engine/testdata/engine_stages.ts";
import { Solution } from "../../pipeline/trace/mod.ts";
import {
  closeSharedSessions,
  GPU_LOCK_DIR_ENV,
  LOCK_CLOCKS_ENV,
} from "../../pipeline/harness/mod.ts";
import { withEnv } from "../../pipeline/harness/testdata/lanes.ts";
import { assert, assertEquals } from "../../tests/assert.ts";
import { rmsnormSolution, rmsnormUpstream } from "../../tests/fixtures/rmsnorm.ts";
import { registered } from "../../tests/stages.ts";
import { compileStage } from "../compile/mod.ts";
import { verifyStage } from "../verify/mod.ts";
import { timeStage } from "./mod.ts";

const tc = await discoverToolchain();
const skip = !tc.python?.torch;
if (skip) console.log("skipping the --lock-clocks stage test: no Python with torch");

/** A fake nvidia-smi in a folder of its own, logging its arguments to `<dir>/calls`. */
function fakeSmi(): string {
  const dir = mkdtempSync(join(tmpdir(), "tp-fake-smi-"));
  writeFileSync(
    join(dir, "nvidia-smi"),
    `#!/bin/sh
echo "$*" >> "${dir}/calls"
case "$*" in
  *--query-gpu=clocks.max.sm,clocks.max.mem*) echo "1980, 2619" ;;
esac
exit 0
`,
  );
  chmodSync(join(dir, "nvidia-smi"), 0o755);
  return dir;
}

Deno.test("without the flag the time stage's env adds nothing to its keys", () => {
  assert(timeStage.env.includes(LOCK_CLOCKS_ENV));
  return withEnv({ [LOCK_CLOCKS_ENV]: undefined }, () => {
    assertEquals(stageEnv(timeStage), {}, "the flag's env var, unset, is absent from the key");
    return Promise.resolve();
  });
});

Deno.test({
  name:
    "--lock-clocks: the time stage locks the clocks, records the lock in each cell, resets them",
  ignore: skip,
  async fn() {
    const smiDir = fakeSmi();
    const path = `${smiDir}:${Deno.env.get("PATH") ?? ""}`;
    const which = await new Deno.Command("sh", {
      args: ["-c", "command -v nvidia-smi"],
      env: { PATH: path },
      stdout: "piped",
    }).output();
    // Never against a real GPU: only if the fake is what PATH finds.
    assertEquals(new TextDecoder().decode(which.stdout).trim(), join(smiDir, "nvidia-smi"));
    const sol = Solution.parse(rmsnormSolution("honest"));
    const stages = [
      ...rmsnormUpstream([{ axes: { batch_size: 4 }, inputs: {}, uuid: "wl-0" }], [sol]),
      registered(compileStage),
      registered(verifyStage),
      registered(timeStage),
    ];
    const store = new Store(mkdtempSync(join(tmpdir(), "tp-clocks-")));
    // A GPU in the toolchain (nothing runs on it: the judge finds no CUDA and times on the CPU).
    const toolchain = { ...tc, gpus: [FAKE_GPU] };
    const params = {
      verify: { num_trials: 1 },
      time: { rounds: 1, min_samples: 3, max_samples: 5, max_seconds: 0.2, input_sets: 2 },
    };
    // The pipeline with the fake nvidia-smi first on PATH and these env vars set (undefined: unset).
    const run = (env: Record<string, string | undefined>) =>
      withEnv(
        { PATH: path, [GPU_LOCK_DIR_ENV]: mkdtempSync(join(tmpdir(), "tp-gpu-locks-")), ...env },
        () =>
          runPipeline({
            root: REPO_ROOT,
            store,
            stages,
            rawParams: params,
            toolchain,
            log: () => {},
          }),
      ).finally(closeSharedSessions);
    const { reports } = await run({ [LOCK_CLOCKS_ENV]: "1", CUDA_VISIBLE_DEVICES: undefined });
    const time = reports.find((r) => r.stage === "time")!;
    assertEquals([time.ran, time.failed], [1, []]);
    const calls = readFileSync(join(smiDir, "calls"), "utf8").trim().split("\n");
    const ours = calls.filter((c) => /-(l|r)[gm]c/.test(c));
    assertEquals(ours, ["-i 0 -lgc 1980,1980", "-i 0 -lmc 2619,2619", "-i 0 -rmc", "-i 0 -rgc"]);
    const [cell] = store.lastResults("time")!;
    const expected = {
      held: true,
      gpus: [{ index: 0, smMHz: 1980, smLocked: true, memMHz: 2619, memLocked: true }],
    };
    const record = JSON.parse(readFileSync(join(cell.dir, "..", "cell.json"), "utf8"));
    // Which GPU timed the cell is provenance too (the toolchain's one GPU here).
    const gpu = { index: 0, name: FAKE_GPU.name, uuid: FAKE_GPU.uuid };
    assertEquals(record.provenance.stage, { clocks: expected, gpu });
    assertEquals(record.keyDocument.env, { [LOCK_CLOCKS_ENV]: "1" });
    const timing = JSON.parse(readFileSync(join(cell.dir, "timing.json"), "utf8"));
    assertEquals(timing.clocks_lock, expected);

    // The same run without the flag: another key (the locked cell is not reused), no lock, and
    // timing.json as it always was.
    const before = calls.length;
    const plain = await run({ [LOCK_CLOCKS_ENV]: undefined });
    assertEquals(plain.reports.find((r) => r.stage === "time")!.ran, 1);
    const after = readFileSync(join(smiDir, "calls"), "utf8").trim().split("\n");
    assert(!after.slice(before).some((c) => /-(l|r)[gm]c/.test(c)), "no lock without the flag");
    const [unlocked] = store.lastResults("time")!;
    const rec2 = JSON.parse(readFileSync(join(unlocked.dir, "..", "cell.json"), "utf8"));
    assertEquals([rec2.keyDocument.env, rec2.provenance.stage], [{}, { gpu }]);
    assert(!("clocks_lock" in JSON.parse(readFileSync(join(unlocked.dir, "timing.json"), "utf8"))));
  },
});
