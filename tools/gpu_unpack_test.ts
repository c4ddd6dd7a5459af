/**
 * tools/gpu-unpack.sh (what tools/gpu-run.sh unpacks on the GPU machine): each bundle is unpacked
 * once per machine, so a second invocation keeps the run index the first one wrote; a new bundle
 * (another digest) is unpacked.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../pipeline/engine/mod.ts";
import { assert, assertEquals, assertMatch } from "../tests/assert.ts";

const SCRIPT = join(REPO_ROOT, "tools", "gpu-unpack.sh");

async function sh(cwd: string, cmd: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(cmd, { args, cwd, env, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, `${cmd} ${args.join(" ")}: ${text}`);
  return text;
}

/** Writes `.device/gpu-store.tar.xz` in `root` holding runs/time.json = `index`. */
async function fakeGpuStore(root: string, index: string) {
  const src = mkdtempSync(join(tmpdir(), "tp-fake-store-"));
  mkdirSync(join(src, "runs"), { recursive: true });
  mkdirSync(join(src, "cells", "time", "k1"), { recursive: true });
  writeFileSync(join(src, "runs", "time.json"), index);
  writeFileSync(join(src, "cells", "time", "k1", "cell.json"), "{}");
  mkdirSync(join(root, ".device"), { recursive: true });
  await sh(src, "tar", ["cJf", join(root, ".device", "gpu-store.tar.xz"), "runs", "cells"]);
}

Deno.test("gpu-run's bundles are unpacked once per machine: a second invocation keeps the run index", async () => {
  const root = mkdtempSync(join(tmpdir(), "tp-gpu-root-"));
  const bin = mkdtempSync(join(tmpdir(), "tp-gpu-bin-"));
  const env = { TP_BIN_DIR: bin, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };
  await fakeGpuStore(root, '{"cells":["from the bundle"]}');
  await sh(root, "sh", ["-c", "printf '#!/bin/sh\\necho fake deno\\n' | xz > .device/deno.xz"]);
  const index = join(root, ".tracepipe", "store", "runs", "time.json");

  const first = await sh(root, "bash", [SCRIPT], env);
  assertMatch(first, /unpacked \.device\/gpu-store\.tar\.xz/);
  assertEquals(readFileSync(index, "utf8"), '{"cells":["from the bundle"]}');
  assertEquals(await sh(root, join(bin, "deno"), []), "fake deno\n");
  // The first invocation's run merges its cells into the index...
  writeFileSync(index, '{"cells":["from the bundle","from the first invocation"]}');
  // ...and a second invocation on the same machine must not unpack the bundle over it.
  const second = await sh(root, "bash", [SCRIPT], env);
  assertMatch(second, /gpu-store\.tar\.xz already unpacked here/);
  assertEquals(
    readFileSync(index, "utf8"),
    '{"cells":["from the bundle","from the first invocation"]}',
  );
  // A new bundle (another digest) is unpacked.
  await fakeGpuStore(root, '{"cells":["a newer bundle"]}');
  const third = await sh(root, "bash", [SCRIPT], env);
  assertMatch(third, /unpacked \.device\/gpu-store\.tar\.xz/);
  assertEquals(readFileSync(index, "utf8"), '{"cells":["a newer bundle"]}');
});

Deno.test("gpu-run.sh unpacks through gpu-unpack.sh, never with a tar of its own", () => {
  const run = readFileSync(join(REPO_ROOT, "tools", "gpu-run.sh"), "utf8");
  assert(/bash tools\/gpu-unpack\.sh/.test(run), "gpu-run.sh calls tools/gpu-unpack.sh");
  assert(!/tar x/.test(run), "no unconditional unpack left in gpu-run.sh");
});

Deno.test("a second profile's bundle (TP_STORE_BUNDLE) unpacks into its own store (TP_STORE), the first left alone", async () => {
  const root = mkdtempSync(join(tmpdir(), "tp-gpu-root-"));
  const bin = mkdtempSync(join(tmpdir(), "tp-gpu-bin-"));
  const env = { TP_BIN_DIR: bin, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };
  // Two store bundles: the default profile's and the characterization's.
  for (
    const [name, index] of [["store.tar.xz", "default"], ["store-dc.tar.xz", "characterization"]]
  ) {
    const src = mkdtempSync(join(tmpdir(), "tp-fake-bundle-"));
    mkdirSync(join(src, "runs"), { recursive: true });
    writeFileSync(join(src, "runs", "extract.json"), index);
    mkdirSync(join(root, ".device"), { recursive: true });
    await sh(src, "tar", ["cJf", join(root, ".device", name), "runs"]);
  }
  await sh(root, "bash", [SCRIPT], env);
  const second = await sh(root, "bash", [SCRIPT], {
    ...env,
    TP_STORE_BUNDLE: "store-dc.tar.xz",
    TP_STORE: ".tracepipe/store-dc",
  });
  assertMatch(second, /unpacked \.device\/store-dc\.tar\.xz into \.tracepipe\/store-dc/);
  const read = (store: string) =>
    readFileSync(join(root, ".tracepipe", store, "runs", "extract.json"), "utf8");
  assertEquals(read("store"), "default");
  assertEquals(read("store-dc"), "characterization");
});

Deno.test("gpu-run.sh runs, merges and packs the store it was given (TP_STORE), no other", () => {
  const run = readFileSync(join(REPO_ROOT, "tools", "gpu-run.sh"), "utf8");
  assert(/reproduce --store "\$store"/.test(run), "reproduce is run on $store");
  assert(/import --store "\$store"/.test(run), "the run indexes are united in $store");
  assert(/pack gpu-store\.tar\.xz -C "\$store"/.test(run), "the cells are packed from $store");
  // Every mention of the default store is the default of TP_STORE.
  const mentions = run.split("\n").filter((l) =>
    !l.startsWith("#") && l.includes(".tracepipe/store")
  );
  assertEquals(mentions, ["export TP_STORE=${TP_STORE:-.tracepipe/store}"]);
});

Deno.test("gpu-run.sh brings back the cells of a run stopped before time (no runs/time.json)", async () => {
  const root = mkdtempSync(join(tmpdir(), "tp-gpu-root-"));
  const out = mkdtempSync(join(tmpdir(), "tp-gpu-out-"));
  mkdirSync(join(root, "tools"));
  for (const f of ["gpu-run.sh", "gpu-unpack.sh"]) {
    writeFileSync(join(root, "tools", f), readFileSync(join(REPO_ROOT, "tools", f)));
  }
  // A store whose verify ran and whose time did not; a Deno that does nothing.
  const store = join(root, ".tracepipe", "store");
  mkdirSync(join(store, "runs"), { recursive: true });
  mkdirSync(join(store, "cells", "verify", "k1"), { recursive: true });
  writeFileSync(join(store, "runs", "verify.json"), "{}");
  writeFileSync(join(store, "cells", "verify", "k1", "cell.json"), "{}");
  mkdirSync(join(root, ".device"));
  await sh(root, "sh", ["-c", "printf '#!/bin/sh\\nexit 0\\n' | xz > .device/deno.xz"]);
  const bin = mkdtempSync(join(tmpdir(), "tp-gpu-bin-"));
  await sh(root, "bash", ["tools/gpu-run.sh", "5"], {
    OUT: out,
    TP_BIN_DIR: bin,
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
  });
  const listed = await sh(out, "tar", ["tJf", "gpu-store.tar.xz"]);
  assertMatch(listed, /runs\/verify\.json/);
  assertMatch(listed, /cells\/verify\/k1\/cell\.json/);
});

Deno.test("an earlier session's cells of another profile (TP_GPU_STORE) unpack into that profile's store only", async () => {
  const root = mkdtempSync(join(tmpdir(), "tp-gpu-root-"));
  const bin = mkdtempSync(join(tmpdir(), "tp-gpu-bin-"));
  const env = { TP_BIN_DIR: bin, PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" };
  await fakeGpuStore(root, "default's cells");
  await sh(root, "mv", [".device/gpu-store.tar.xz", ".device/gpu-store-dc.tar.xz"]);
  await sh(root, "bash", [SCRIPT], env);
  const dcEnv = { ...env, TP_STORE: ".tracepipe/store-dc", TP_GPU_STORE: "gpu-store-dc.tar.xz" };
  assertMatch(await sh(root, "bash", [SCRIPT], dcEnv), /unpacked \.device\/gpu-store-dc\.tar\.xz/);
  assertEquals(
    readFileSync(join(root, ".tracepipe", "store-dc", "runs", "time.json"), "utf8"),
    "default's cells",
  );
  assert(
    !existsSync(join(root, ".tracepipe", "store", "runs", "time.json")),
    "the default store is left alone",
  );
});
