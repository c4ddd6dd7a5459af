/**
 * What the CLI loads before it runs a command. A GPU machine carries the repository, Deno and zod
 * only (docs/GPU.md: 64 MiB a call), so `reproduce --from compile --to time` must not reach DuckDB's
 * native binding or the chart packages: they are loaded by the stages and commands that use them,
 * when they run. A static import of either, anywhere under the CLI, fails this test; so does one
 * under a stage's face other than aggregate's (a `--set <stage>.…` loads that stage there).
 */
import { fileURLToPath } from "node:url";
import { assert, assertEquals } from "../tests/assert.ts";

const HEAVY = /^npm:\/?(@duckdb\/|vega|playwright|arquero)/;

interface InfoModule {
  specifier: string;
  dependencies?: { specifier: string; code?: { specifier: string }; isDynamic?: boolean }[];
  npmPackage?: string;
}

/** The modules reachable from `root` through static imports, and the heavy packages among them. */
async function staticWalk(root: string): Promise<{ reached: number; heavy: string[] }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", root],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: InfoModule[];
  };
  const bySpecifier = new Map(info.modules.map((m) => [m.specifier, m]));
  const seen = new Set<string>([info.roots[0]]);
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
      if (seen.has(next)) continue;
      seen.add(next);
      queue.push(next);
    }
  }
  return { reached: seen.size, heavy };
}

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));

Deno.test("the CLI's static imports reach no DuckDB, vega or browser package", async () => {
  const { reached, heavy } = await staticWalk(here("./cli.ts"));
  assert(reached > 50, `the walk reached only ${reached} modules: deno info's format changed?`);
  assertEquals(heavy, []);
});

Deno.test("no stage's face but aggregate's reaches DuckDB, vega or a browser statically", async () => {
  for (
    const stage of [
      "definitions",
      "collect",
      "extract",
      "generate",
      "compile",
      "verify",
      "time",
      "apply",
    ]
  ) {
    const { heavy } = await staticWalk(here(`../stages/${stage}/mod.ts`));
    assertEquals(heavy, [], `stage ${stage}`);
  }
});
