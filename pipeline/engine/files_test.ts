import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { copyDirAtomic } from "./files.ts";

/** A folder `src` holding a.txt, sub/b.txt and a .git folder, in a fresh temporary folder. */
function tree(): string {
  const dir = mkdtempSync(join(tmpdir(), "tp-files-"));
  mkdirSync(join(dir, "src", "sub", ".git"), { recursive: true });
  writeFileSync(join(dir, "src", "a.txt"), "a");
  writeFileSync(join(dir, "src", "sub", "b.txt"), "b");
  writeFileSync(join(dir, "src", "sub", ".git", "HEAD"), "ref");
  return dir;
}

Deno.test("copyDirAtomic copies the whole folder under new parents, leaving the skipped names and no temporary folder", () => {
  const dir = tree();
  const to = join(dir, "new", "parents", "dest");
  copyDirAtomic(join(dir, "src"), to, { skip: [".git"] });
  assertEquals(readFileSync(join(to, "a.txt"), "utf8"), "a");
  assertEquals(readFileSync(join(to, "sub", "b.txt"), "utf8"), "b");
  assert(!existsSync(join(to, "sub", ".git")), ".git was copied");
  assertEquals(readdirSync(join(dir, "new", "parents")), ["dest"]);
  // Without skip, nothing is left out; a temporary folder the caller names is used and gone after.
  const tmp = join(dir, "scratch");
  copyDirAtomic(join(dir, "src"), join(dir, "all"), { tmp });
  assert(existsSync(join(dir, "all", "sub", ".git", "HEAD")));
  assert(!existsSync(tmp), "the temporary folder is left");
});

Deno.test("copyDirAtomic that fails leaves neither the destination nor a temporary folder", () => {
  const dir = tree();
  assertThrows(() => copyDirAtomic(join(dir, "missing"), join(dir, "dest")));
  assertEquals(readdirSync(dir), ["src"]);
  // The rename fails where the destination is a non-empty folder: the copy is removed.
  mkdirSync(join(dir, "full"));
  writeFileSync(join(dir, "full", "x"), "x");
  assertThrows(() => copyDirAtomic(join(dir, "src"), join(dir, "full")));
  assertEquals(readdirSync(dir).sort(), ["full", "src"]);
  assertEquals(readdirSync(join(dir, "full")), ["x"]);
});
