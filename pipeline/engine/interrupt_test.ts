/**
 * However a run stops (it ends, Ctrl-C, SIGTERM from a CI cancel or `timeout`, or a SIGKILL no
 * handler sees), no process it started is left 10 s later; SIGINT and SIGTERM keep the finished
 * cells and report the unfinished ones as interrupted. The run is the `groups` test stage, which
 * starts processes the way the judging stages do (testdata/process_stages.ts), under
 * superviseRun as the CLI runs it.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals } from "../../tests/assert.ts";
import { REPO_ROOT } from "./paths.ts";
import { Store } from "./store.ts";

const hasProc = existsSync("/proc/self/environ");
if (!hasProc) console.log("skipping the process-cleanup tests: no /proc on this system");

/** Pids of live processes whose environment holds `NAME=value`. */
function processesWith(name: string, value: string): number[] {
  const needle = new TextEncoder().encode(`\0${name}=${value}\0`);
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let env: Uint8Array;
    try {
      env = new Uint8Array([0, ...readFileSync(`/proc/${d}/environ`), 0]);
    } catch {
      continue; // gone, or not ours
    }
    try {
      // A zombie still lists its environment but is no process of anyone's any more.
      if (/^\S+ \(.*\) Z/.test(readFileSync(`/proc/${d}/stat`, "utf8"))) continue;
    } catch {
      continue;
    }
    search: for (let i = 0; i + needle.length <= env.length; i++) {
      for (let j = 0; j < needle.length; j++) if (env[i + j] !== needle[j]) continue search;
      out.push(Number(d));
      break;
    }
  }
  return out;
}

/** Waits up to `ms` for every process tagged `tag` to be gone; returns those left. */
async function leftAfter(tag: string, ms: number): Promise<number[]> {
  const end = Date.now() + ms;
  let left = processesWith("TP_TEST_TAG", tag);
  while (left.length && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 200));
    left = processesWith("TP_TEST_TAG", tag);
  }
  return left;
}

async function startRun(items: Record<string, string>) {
  const store = mkdtempSync(join(tmpdir(), "tp-sup-store-"));
  const hang = mkdtempSync(join(tmpdir(), "tp-sup-hang-"));
  const tag = crypto.randomUUID();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join(REPO_ROOT, "pipeline/engine/testdata/supervised_child.ts"),
      store,
      JSON.stringify(items),
    ],
    env: { TP_TEST_HANG_DIR: hang, TP_TEST_TAG: tag },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  for (let i = 0; i < 300; i++) {
    if (readdirSync(hang).length === Object.keys(items).length) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assertEquals(readdirSync(hang).length, Object.keys(items).length, "every cell started");
  return { child, tag, store: new Store(store) };
}

const kill = (pids: number[]) => {
  for (const p of pids) {
    try {
      Deno.kill(p, "SIGKILL");
    } catch { /* gone */ }
  }
};

Deno.test({
  name: "a run that ends normally leaves none of its processes behind",
  ignore: !hasProc,
  async fn() {
    const { child, tag } = await startRun({ a: "quick" });
    const out = await child.output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    const left = await leftAfter(tag, 10_000);
    kill(left);
    assertEquals(left, [], "processes of the run left 10 s after it ended");
  },
});

for (const [sig, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  Deno.test({
    name:
      `${sig} stops a run like Ctrl-C: finished cells kept, the rest interrupted, no process left`,
    ignore: !hasProc,
    async fn() {
      const { child, tag, store } = await startRun({ a: "quick", b: "hang" });
      // `a` is committed once its run returns; wait for it so the test knows what is finished.
      for (let i = 0; i < 100 && !existsSync(join(store.root, "cells", "groups")); i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      child.kill(sig);
      const out = await child.output();
      const text = new TextDecoder().decode(out.stdout);
      assertEquals(out.code, code, text + new TextDecoder().decode(out.stderr));
      const { reports, stoppedAt, by } = JSON.parse(text);
      assertEquals([by, stoppedAt], [sig, "groups"]);
      assertEquals([reports[0].ran, reports[0].failed, reports[0].interrupted], [1, [], ["b"]]);
      assertEquals(store.readRun("groups")!.cells.map((c) => c.id), ["a"]);
      const left = await leftAfter(tag, 10_000);
      kill(left);
      assertEquals(left, [], `processes of the run left 10 s after ${sig}`);
    },
  });
}

Deno.test({
  name: "a run killed with SIGKILL leaves none of its processes behind (the reaper)",
  ignore: !hasProc,
  async fn() {
    const { child, tag } = await startRun({ a: "hang" });
    child.kill("SIGKILL");
    await child.output();
    const left = await leftAfter(tag, 10_000);
    kill(left);
    assertEquals(left, [], "processes of the run left 10 s after a SIGKILL");
  },
});

Deno.test({
  name: "the reaper runs the commands registered with atProcessExit once the process is gone",
  ignore: !hasProc,
  async fn() {
    const dir = mkdtempSync(join(tmpdir(), "tp-reaper-"));
    const code = `
      import { atProcessExit, startReaper } from ${
      JSON.stringify(join(REPO_ROOT, "pipeline/engine/reaper.ts"))
    };
      startReaper();
      atProcessExit(["touch", ${JSON.stringify(join(dir, "kept"))}]);
      atProcessExit(["touch", ${JSON.stringify(join(dir, "it's forgotten"))}])();
      Deno.kill(Deno.pid, "SIGKILL");
    `;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(out.signal, "SIGKILL");
    for (let i = 0; i < 100 && !existsSync(join(dir, "kept")); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    assert(existsSync(join(dir, "kept")), "the registered command ran after a SIGKILL");
    assert(!existsSync(join(dir, "it's forgotten")), "an unregistered command did not run");
  },
});
