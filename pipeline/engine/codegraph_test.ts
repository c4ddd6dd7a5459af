import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { assert, assertEquals } from "../../tests/assert.ts";
import { codeDigest, moduleGraph } from "./codegraph.ts";

Deno.test("the code digest follows value imports, not type-only ones", () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-graph-"));
  const write = (name: string, text: string) => writeFileSync(join(dir, name), text);
  write(
    "entry.ts",
    [
      'import type { Shape } from "./types.ts";',
      'export type { Other } from "./types2.ts";',
      'import { area, type Unit } from "./values.ts";',
      'export { perimeter } from "./more.ts";',
      'const lazy = () => import("./lazy.ts");',
      "export const f = (s: Shape) => area(s);",
    ].join("\n"),
  );
  write("types.ts", "export interface Shape { w: number }\n");
  write("types2.ts", "export interface Other { h: number }\n");
  write(
    "values.ts",
    "export const area = (s: { w: number }) => s.w * s.w;\nexport type Unit = 1;\n",
  );
  write("more.ts", "export const perimeter = 4;\n");
  write("lazy.ts", "export const x = 1;\n");
  const entry = join(dir, "entry.ts");
  const names = moduleGraph(entry).files.map((f) => f.slice(dir.length + 1));
  assertEquals(names, ["entry.ts", "lazy.ts", "more.ts", "values.ts"]);

  const digest = () => codeDigest(dir, pathToFileURL(entry).href).digest;
  const before = digest();
  write("types.ts", "export interface Shape { w: number; h: number }\n");
  assertEquals(digest(), before, "a type-only dependency does not change the digest");
  write("values.ts", "export const area = (s: { w: number }) => s.w * 2;\n");
  assert(digest() !== before, "a value dependency does");
});

Deno.test("through a face, the digest follows only the modules behind the imported names", () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-face-"));
  const write = (name: string, text: string) => writeFileSync(join(dir, name), text);
  write(
    "mod.ts",
    [
      "/** The face. */",
      'export { one } from "./one.ts";',
      'export { two, type Two } from "./two.ts";',
      'export type { Three } from "./three.ts";',
    ].join("\n"),
  );
  write("one.ts", "export const one = 1;\n");
  write("two.ts", "export const two = 2;\nexport type Two = 2;\n");
  write("three.ts", "export type Three = 3;\n");
  write("uses_one.ts", 'import { one } from "./mod.ts";\nexport const x = one;\n');
  write("uses_all.ts", 'import * as all from "./mod.ts";\nexport const x = all;\n');
  write("not_a_face.ts", 'export { one } from "./one.ts";\nexport const extra = 1;\n');
  write("uses_not_face.ts", 'import { one } from "./not_a_face.ts";\nexport const x = one;\n');
  const files = (entry: string) =>
    moduleGraph(join(dir, entry)).files.map((f) => f.slice(dir.length + 1));
  assertEquals(files("uses_one.ts"), ["mod.ts", "one.ts", "uses_one.ts"]);
  assertEquals(files("uses_all.ts"), ["mod.ts", "one.ts", "two.ts", "uses_all.ts"]);
  assertEquals(files("uses_not_face.ts"), ["not_a_face.ts", "one.ts", "uses_not_face.ts"]);
});
