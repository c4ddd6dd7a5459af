/**
 * The command line and the GPUs of a host, on this CPU machine with a fake GPU list: `reproduce
 * --gpus` refuses a bad value in one line (exit 2) and takes a good one, and `doctor` lists the GPUs
 * with whoever holds each.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../tests/assert.ts";
import { runCli } from "../tests/cli.ts";
import { hostGpus, takeGpuLock } from "./harness/mod.ts";
import { fakeGpuEnv, withEnv } from "./harness/testdata/lanes.ts";

const TWO_GPUS = "0:H100:81559,1:H100:81559";

/** `tp <args>` on a host with two fake GPUs and a lock folder of its own. */
function tp(args: string[], env: Record<string, string | undefined> = fakeGpuEnv(TWO_GPUS).env) {
  const defined = Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined);
  return runCli(args, { env: Object.fromEntries(defined) });
}

/** Exit 2 and exactly one `error:` line, equal to `line`, with no stack trace. */
function assertRefused(r: { code: number; text: string }, line: string) {
  assertEquals(r.code, 2, r.text);
  assertEquals(r.text.split("\n").filter((l) => l.startsWith("error: ")), [line], r.text);
  assert(!/\n\s+at /.test(r.text), `stack trace in:\n${r.text}`);
}

const store = () => ["--store", mkdtempSync(join(tmpdir(), "tp-cli-gpus-"))];

Deno.test("--gpus: a value that is not a list of this host's GPU indices is one line, exit 2", async () => {
  assertRefused(
    await tp(["reproduce", "--only", "definitions", "--gpus", "0,one", ...store()]),
    'error: --gpus: "one" is not a GPU index (expected a list such as 0,1; GPUs here: 0, 1)',
  );
  assertRefused(
    await tp(["reproduce", "--only", "definitions", "--gpus", "1,2", ...store()]),
    "error: --gpus: GPU 2 is not on this host (GPUs here: 0, 1)",
  );
});

Deno.test("--gpus: GPUs of the host are taken (the run goes on)", async () => {
  const r = await tp(["reproduce", "--only", "definitions", "--gpus", "1", ...store()]);
  assertEquals(r.code, 0, r.text);
});

Deno.test("doctor lists each GPU with its memory and who holds it", async () => {
  const { env } = fakeGpuEnv(TWO_GPUS);
  const release = await withEnv(env, () => {
    const taken = takeGpuLock(hostGpus([])[1], "tp reproduce --gpus 1");
    assert(typeof taken === "function");
    return Promise.resolve(taken);
  });
  try {
    const r = await tp(["doctor"], env);
    assertEquals(r.code, 0, r.text);
    const gpuLines = r.out.split("\n").filter((l) => l.startsWith("gpu "));
    assertEquals(gpuLines.length, 2, r.out);
    assertEquals(gpuLines[0], "gpu 0      H100 (fake: TRACEPIPE_FAKE_GPUS), 81559 MiB; free");
    assertMatch(
      gpuLines[1],
      /^gpu 1 {6}H100 \(fake: TRACEPIPE_FAKE_GPUS\), 81559 MiB; in use by pid \d+ on .*, `tp reproduce --gpus 1`, started /,
    );
    assertMatch(r.out, /lanes: verify runs parallel_processes judges on each of the 2 GPUs above/);
  } finally {
    release();
  }
});
