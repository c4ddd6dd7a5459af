/**
 * What the CLI loads before it runs a command. A GPU machine carries the repository, Deno and zod
 * only (docs/GPU.md: 64 MiB a call), so `reproduce --from compile --to time` must not reach DuckDB's
 * native binding or the chart packages: they are loaded by the stages and commands that use them,
 * when they run. A static import of either, anywhere under the CLI, fails this test.
 */
import { fileURLToPath } from "node:url";
import { assert, assertEquals } from "../tests/assert.ts";

const HEAVY = /^npm:\/?(@duckdb\/|vega|playwright|arquero)/;

interface InfoModule {
  specifier: string;
  dependencies?: { specifier: string; code?: { specifier: string }; isDynamic?: boolean }[];
  npmPackage?: string;
}

Deno.test("the CLI's static imports reach no DuckDB, vega or browser package", async () => {
  const cli = fileURLToPath(new URL("./cli.ts", import.meta.url));
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", cli],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: InfoModule[];
  };
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  // Walk static edges only, remembering how each module was reached (for the failure message).
  const via = new Map<string, string>([[info.roots[0], ""]]);
  const queue = [info.roots[0]];
  const heavy: string[] = [];
  while (queue.length) {
    const at = queue.shift()!;
    for (const d of bySpecifier.get(at)?.dependencies ?? []) {
      if (d.isDynamic || !d.code) continue;
      const next = d.code.specifier;
      if (HEAVY.test(next) || HEAVY.test(`npm:${d.specifier}`)) {
        heavy.push(`${d.specifier} from ${at}`);
      }
      if (via.has(next)) continue;
      via.set(next, at);
      queue.push(next);
    }
  }
  assert(via.size > 50, `the walk reached only ${via.size} modules: deno info's format changed?`);
  assertEquals(heavy, []);
});
