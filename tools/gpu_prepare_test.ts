// tools/gpu-prepare.sh and tools/gpu-bundle.sh refuse what they do not know in one line, before building anything.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { assertEquals } from "../tests/assert.ts";

const HERE = dirname(fileURLToPath(import.meta.url));

Deno.test("gpu-prepare: an unknown bundle name is one line and exit 2, nothing built", async () => {
  const o = await new Deno.Command("bash", {
    args: [join(HERE, "gpu-prepare.sh"), "dc", "everything"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(o.code, 2);
  assertEquals(new TextDecoder().decode(o.stdout), "");
  assertEquals(
    new TextDecoder().decode(o.stderr),
    "gpu-prepare: unknown bundle 'everything' (dc, lt)\n",
  );
});

Deno.test("gpu-bundle: an option where the definition regex goes is one line and exit 2, nothing written", async () => {
  const store = await Deno.makeTempDir({ prefix: "tp-bundle-" });
  try {
    const o = await new Deno.Command("bash", {
      args: [join(HERE, "gpu-bundle.sh"), "--estimate"],
      env: { STORE: store, BUNDLE: "never-written.tar.xz" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(o.code, 2);
    assertEquals(
      new TextDecoder().decode(o.stderr),
      "gpu-bundle: '--estimate' is not a definition regex (usage: tools/gpu-bundle.sh [DEFINITION_REGEX])\n",
    );
    let written = true;
    try {
      await Deno.stat(join(HERE, "..", ".device", "never-written.tar.xz"));
    } catch {
      written = false;
    }
    assertEquals(written, false);
  } finally {
    await Deno.remove(store, { recursive: true });
  }
});
