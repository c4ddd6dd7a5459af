/**
 * The command line's answers to bad params and to a busy store: one line naming the profile field
 * or the `--set` that gave the value (exit 2, no stack trace), unknown `--set` keys refused with the
 * keys the stage knows, the closing summary, `--wait` for every command that takes the lock (saying
 * whose run it waits for), and `gc` saying when its target could not be reached.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../tests/assert.ts";
import { CLI, runCli } from "../tests/cli.ts";
import { type StageReport, stageReport, Store } from "./engine/mod.ts";
import { summarizeRun } from "./cli.ts";

const cli = (...args: string[]) => runCli(args);

const store = () => mkdtempSync(join(tmpdir(), "tp-cli-err-"));

/** Exit 2, exactly one `error:` line matching `re`, and no stack trace. */
function assertOneLine(r: { code: number; text: string }, re: RegExp) {
  assertEquals(r.code, 2, r.text);
  const errors = r.text.split("\n").filter((l) => l.startsWith("error: "));
  assertEquals(errors.length, 1, r.text);
  assertMatch(errors[0], re);
  assert(!/\n\s+at /.test(r.text), `stack trace in:\n${r.text}`);
}

Deno.test("an unknown serving-trace name is one line naming the profile field, exit 2", async () => {
  const dir = store();
  const profile = join(dir, "p.json");
  writeFileSync(profile, JSON.stringify({ collect: { traces: [{ name: "no-such-trace" }] } }));
  const r = await cli("reproduce", "--only", "collect", "--profile", profile, "--store", dir);
  assertOneLine(
    r,
    /p\.json: \$\.collect\.traces\[0\]\.name: trace "no-such-trace" is not known \(azure-conv/,
  );
});

Deno.test("an unknown serving-trace name given by --set is blamed on that --set", async () => {
  const r = await cli(
    "reproduce",
    "--only",
    "collect",
    "--set",
    'collect.traces=[{"name":"azure-conv"},{"name":"nope"}]',
    "--store",
    store(),
  );
  assertOneLine(r, /^error: --set collect\.traces: \$\.collect\.traces\[1\]\.name: trace "nope"/);
});

Deno.test("a missing serving-trace file is one line naming the param and the file", async () => {
  const missing = join(store(), "gone.csv");
  const r = await cli(
    "reproduce",
    "--only",
    "collect",
    "--set",
    `collect.traces=[{"name":"mine","path":"${missing}","format":"azure-csv"}]`,
    "--store",
    store(),
  );
  assertOneLine(
    r,
    new RegExp(
      `--set collect\\.traces: \\$\\.collect\\.traces\\[0\\]\\.path: .*${missing}.* does not exist`,
    ),
  );
});

Deno.test("a bad --set value is blamed on the --set, not on the profile", async () => {
  const r = await cli(
    "reproduce",
    "--only",
    "collect",
    "--set",
    "collect.seed=-1",
    "--store",
    store(),
  );
  assertOneLine(r, /^error: --set collect\.seed: \$\.collect\.seed: /);
  assert(!r.text.includes("default.json"), r.text);
});

Deno.test("an unknown --set key or stage is refused, naming the keys the stage knows", async () => {
  const s = store();
  assertOneLine(
    await cli("reproduce", "--only", "collect", "--set", "collect.something=bad", "--store", s),
    /--set collect\.something: collect has no param "something" \(known: traces, models, .*seed/,
  );
  assertOneLine(
    await cli("reproduce", "--only", "collect", "--set", "collect.traces.0.nme=x", "--store", s),
    /--set collect\.traces\.0\.nme: collect\.traces\.0 has no param "nme" \(known: name, /,
  );
  assertOneLine(
    await cli("reproduce", "--set", "colect.seed=1", "--store", s),
    /--set colect\.seed: unknown stage "colect" \(stages: definitions, collect/,
  );
  // status and why read the same params: the same check.
  assertOneLine(
    await cli("status", "--set", "time.roundz=3", "--store", s),
    /--set time\.roundz: time has no param "roundz" \(known: .*rounds/,
  );
});

const report = (over: Partial<StageReport>) => stageReport("verify", over);

Deno.test("the summary says 'nothing to do' only when nothing ran, failed or was interrupted", () => {
  assertMatch(summarizeRun([report({ hits: 3 })], 900)[0], /^nothing to do: every cell/);
  const stopped = summarizeRun(
    [report({ ran: 2, interrupted: ["a", "b", "c"] })],
    1500,
    "verify",
  );
  assertEquals(stopped[0], "ran 2 cells in 1.5s (interrupted in verify)");
  assertMatch(stopped[1], /^interrupted: 3 cells were left unfinished/);
  const onlyStopped = summarizeRun([report({ interrupted: ["a"] })], 100, "verify");
  assert(!onlyStopped.some((l) => l.startsWith("nothing to do")), onlyStopped.join("\n"));
  const failed = summarizeRun([report({ failed: [{ id: "a", error: "boom" }] })], 100);
  assertEquals(failed[0], "ran 0 cells, 1 failed in 0.10s");
  const before = summarizeRun([], 100, "time");
  assertEquals(before, [
    "ran 0 cells in 0.10s (interrupted in time)",
    "interrupted before time ran; the next run picks it up",
  ]);
});

/** Holds `dir`'s lock as a live process of this host would (this test's own pid). */
function holdLock(dir: string) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "lock"),
    JSON.stringify({
      pid: Deno.pid,
      host: hostname(),
      startedAt: "2030-01-01T00:00:00.000Z",
      command: "tp reproduce --to time",
    }),
  );
  return () => rmSync(join(dir, "lock"), { force: true });
}

/** Spawns the CLI and resolves once its output matches `re` (or rejects after 60 s). */
function spawnUntil(args: string[], re: RegExp) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let text = "";
  const dec = new TextDecoder();
  const read = async (s: ReadableStream<Uint8Array>) => {
    for await (const c of s) text += dec.decode(c, { stream: true });
  };
  const done = Promise.all([read(child.stdout), read(child.stderr), child.status]).then(
    ([, , st]) => ({ code: st.code, text }),
  );
  const seen = (async () => {
    for (let i = 0; i < 600 && !re.test(text); i++) await new Promise((r) => setTimeout(r, 100));
    if (!re.test(text)) throw new Error(`never printed ${re}:\n${text}`);
  })();
  return { child, done, seen };
}

Deno.test("gc and import accept --wait, and say whose run they wait for", async () => {
  for (const cmd of [["gc"], ["import", store()]]) {
    const dir = store();
    const free = holdLock(dir);
    try {
      const refused = await cli(...cmd, "--store", dir);
      assertEquals(refused.code, 3, refused.text);
      assertMatch(refused.text, /`tp reproduce --to time`.*pass --wait/);
      const waiting = spawnUntil([...cmd, "--wait", "--store", dir], /waiting for the store/);
      await waiting.seen;
      free();
      const r = await waiting.done;
      assertEquals(r.code, 0, r.text);
      assertMatch(
        r.text,
        new RegExp(
          `waiting for the store .*, held by pid ${Deno.pid} on .*, \`tp reproduce --to time\`, started 2030-01-01`,
        ),
      );
    } finally {
      free();
    }
  }
});

Deno.test("SIGTERM while waiting for the store ends the wait with one line and exit 143", async () => {
  const dir = store();
  const free = holdLock(dir);
  try {
    const waiting = spawnUntil(
      ["reproduce", "--only", "definitions", "--wait", "--store", dir],
      /waiting for the store/,
    );
    await waiting.seen;
    waiting.child.kill("SIGTERM");
    const r = await waiting.done;
    assertEquals(r.code, 143, r.text);
    assertMatch(r.text, /error: stopped while waiting for the store/);
    assert(!/\n\s+at /.test(r.text), r.text);
  } finally {
    free();
  }
});

Deno.test("gc says when its target cannot be reached because the latest runs are kept", async () => {
  const dir = store();
  const s = new Store(dir);
  const tmp = s.tempDir();
  writeFileSync(join(tmp, "out", "big.bin"), new Uint8Array(64 * 1024));
  writeFileSync(join(tmp, "log.txt"), "");
  const cell = s.commit(tmp, {
    stage: "letters",
    id: "a",
    key: "k".repeat(64),
    keyDocument: {},
    summary: null,
    provenance: {},
  });
  s.writeRun({
    stage: "letters",
    finishedAt: "t",
    cells: [{ id: "a", key: cell.key }],
    notRunnable: [],
    failed: [],
    keyDocuments: {},
  });
  const r = await cli("gc", "--max-size", "1K", "--store", dir);
  assertEquals(r.code, 0, r.text);
  assertMatch(
    r.text,
    /the target 1K was not reached: the store is \d+\.\d KiB over it, because the 1 cells of the latest runs \(\d+\.\d KiB\) are kept; `gc --all`/,
  );
  const fits = await cli("gc", "--max-size", "5G", "--store", dir);
  assert(!/not reached/.test(fits.text), fits.text);
});

Deno.test("a report folder the file system refuses is one line naming the path, exit 2", async () => {
  const dir = store();
  const file = join(dir, "a-file");
  writeFileSync(file, "");
  assertOneLine(await cli("report", "--out", join(file, "report")), /ENOTDIR: .*a-file/);
});

Deno.test("a bad param of a later stage is refused before any stage runs", async () => {
  const dir = store();
  const r = await cli(
    "reproduce",
    "--to",
    "verify",
    "--store",
    dir,
    "--set",
    "verify.definition_regex=gemm_(n",
  );
  assertOneLine(r, /--set verify\.definition_regex: .*not a valid regular expression/);
  assert(!/\[definitions\]/.test(r.text), r.text);
});

Deno.test("import of an archive that is not one is one line saying why, exit 2", async () => {
  const dir = store();
  const bad = join(dir, "gpu-store.tar.xz");
  writeFileSync(bad, "not an archive\n");
  const r = await cli("import", "--store", join(dir, "store"), bad);
  assertOneLine(r, /^error: import: cannot unpack .*gpu-store\.tar\.xz: [^/]/);
  assertEquals(r.text.trim().split("\n").length, 1, r.text);
});
