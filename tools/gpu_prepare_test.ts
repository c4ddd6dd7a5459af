// tools/gpu-prepare.sh refuses a bundle it does not know in one line, before building anything.
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
