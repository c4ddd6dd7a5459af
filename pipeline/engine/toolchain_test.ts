/**
 * The host C++ compiler decides what native sources build (ill-formed C++ that one g++ warns
 * about, another rejects), so it is a toolchain fact of compile's keys and, through
 * hardwareFacts, of verify's and time's: a different `c++`/`g++` on PATH is a different key.
 */
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertNotEquals } from "../../tests/assert.ts";
import { keyDocument } from "./dag.ts";
import { digestJson } from "./hash.ts";
import { compileFacts, hardwareFacts, probeHostCompilers } from "./toolchain.ts";
import { FAKE_TOOLCHAIN, letters } from "./testdata/engine_stages.ts";

/** A folder with fake `c++` and `g++` that print `version` (their bytes differ with it). */
function fakeCompilers(version: string): string {
  const dir = mkdtempSync(join(tmpdir(), "tp-fake-cxx-"));
  for (const name of ["c++", "g++"]) {
    const p = join(dir, name);
    writeFileSync(p, `#!/bin/sh\necho "${name} (Fake) ${version}"\necho "Copyright"\n`);
    chmodSync(p, 0o755);
  }
  return dir;
}

/** Runs `f` with `dir` first on PATH and CXX unset, then restores both. */
async function onPath<T>(dir: string, f: () => Promise<T>): Promise<T> {
  const path = Deno.env.get("PATH") ?? "";
  const cxx = Deno.env.get("CXX");
  Deno.env.set("PATH", `${dir}:${path}`);
  Deno.env.delete("CXX");
  try {
    return await f();
  } finally {
    Deno.env.set("PATH", path);
    if (cxx !== undefined) Deno.env.set("CXX", cxx);
  }
}

Deno.test("the host C++ compiler (path, version, digest) is in compile's and verify/time's keys", async () => {
  const a = fakeCompilers("12.2.0");
  const b = fakeCompilers("13.1.0");
  const hcA = await onPath(a, probeHostCompilers);
  const hcB = await onPath(b, probeHostCompilers);
  assertEquals(hcA.cxx?.path, join(a, "c++"));
  assertEquals(hcA.cxx?.version, "c++ (Fake) 12.2.0");
  assertEquals(hcA.gxx?.version, "g++ (Fake) 12.2.0");
  assertMatch(hcA.gxx?.digest ?? "", /^[0-9a-f]{64}$/);
  const tcA = { ...FAKE_TOOLCHAIN, hostCompilers: hcA };
  const tcB = { ...FAKE_TOOLCHAIN, hostCompilers: hcB };
  const factsA = compileFacts(tcA) as { hostCompiler: { gxx: { version: string } } };
  assertEquals(factsA.hostCompiler.gxx.version, "g++ (Fake) 12.2.0");
  assertNotEquals(digestJson(compileFacts(tcA)), digestJson(compileFacts(tcB)));
  assertNotEquals(digestJson(hardwareFacts(tcA)), digestJson(hardwareFacts(tcB)));
  // Through a stage that declares compileFacts, the cell key moves with the compiler.
  const stage = { ...letters, toolchainFacts: compileFacts };
  const plan = { id: "a", params: "x", inputs: {} };
  const key = (tc: typeof tcA) => digestJson(keyDocument(stage, plan, "code", {}, tc, "", "i"));
  assertNotEquals(key(tcA), key(tcB));
  assertEquals(key(tcA), key({ ...tcA }));
});

Deno.test("CXX names the compiler torch's cpp_extension runs; without one, c++", async () => {
  const a = fakeCompilers("1");
  const b = fakeCompilers("2");
  const hc = await onPath(a, () => {
    Deno.env.set("CXX", join(b, "g++"));
    return probeHostCompilers().finally(() => Deno.env.delete("CXX"));
  });
  assertEquals(hc.cxx?.version, "g++ (Fake) 2");
  assertEquals(hc.gxx?.version, "g++ (Fake) 1");
  const none = await onPath(mkdtempSync(join(tmpdir(), "tp-empty-")), async () => {
    const saved = Deno.env.get("PATH")!;
    Deno.env.set("PATH", saved.split(":")[0]); // only the empty folder
    try {
      return await probeHostCompilers();
    } finally {
      Deno.env.set("PATH", saved);
    }
  });
  assertEquals(none, {});
  assert(compileFacts({ ...FAKE_TOOLCHAIN }).hostCompiler !== undefined);
});
