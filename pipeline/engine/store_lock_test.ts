/** Waiting for the store lock: the holder is named at once and then at every progress interval. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { type LockHolder, Store, StoreLockedError } from "./store.ts";

Deno.test("--wait names the run it waits for at once, then reports progress at each interval", async () => {
  const store = new Store(mkdtempSync(join(tmpdir(), "tp-lock-")));
  const holder = { pid: Deno.pid, host: hostname(), startedAt: "then", command: "tp gc" };
  writeFileSync(join(store.root, "lock"), JSON.stringify(holder));
  const heard: Array<[LockHolder, number]> = [];
  const waiting = store.lock({
    wait: true,
    pollMs: 20,
    progressMs: 100,
    command: "tp reproduce",
    onWait: (h, ms) => heard.push([h, ms]),
  });
  await new Promise((r) => setTimeout(r, 450));
  rmSync(join(store.root, "lock"));
  const release = await waiting;
  assertEquals(heard[0][0], holder);
  assert(heard[0][1] < 100, "the holder is named as the wait begins");
  assert(heard.length >= 3 && heard.length <= 6, `progress at each interval: ${heard.length}`);
  for (let i = 1; i < heard.length; i++) assert(heard[i][1] - heard[i - 1][1] >= 100);
  // Our own lock records the command for whoever waits for us.
  assertEquals(store.lockHolder()?.command, "tp reproduce");
  release();
  assertEquals(store.lockHolder(), null);
});

Deno.test("an aborted signal ends the wait with a StoreLockedError", async () => {
  const store = new Store(mkdtempSync(join(tmpdir(), "tp-lock-")));
  writeFileSync(join(store.root, "lock"), JSON.stringify({ pid: Deno.pid, host: hostname() }));
  const abort = new AbortController();
  setTimeout(() => abort.abort(), 100);
  const err = await assertRejects(
    () => store.lock({ wait: true, pollMs: 20, signal: abort.signal }),
    /stopped while waiting for the store/,
  );
  assert(err instanceof StoreLockedError);
});
