/**
 * Snapshots are published by renames only: the dated folder, then a new `latest` link renamed over
 * the old one, so `latest` always names a complete snapshot. Unchanged files are shared.
 */
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals } from "../../tests/assert.ts";
import {
  latestSnapshot,
  linkUnchanged,
  newStaging,
  pointLatest,
  publishSnapshot,
  removeStaleStaging,
  snapshotName,
} from "./snapshot.ts";

function withDir(f: (dir: string) => void) {
  const dir = mkdtempSync(join(tmpdir(), "tp-snap-"));
  try {
    f(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

Deno.test("publish: the staging folder becomes the dated snapshot, then latest moves to it", () => {
  withDir((root) => {
    assertEquals(latestSnapshot(root), null);
    const s1 = newStaging(root);
    writeFileSync(join(s1, "night.json"), "{}");
    publishSnapshot(root, s1, snapshotName(root, "2025-01-02"));
    assertEquals(latestSnapshot(root)?.name, "2025-01-02");
    // A second night the same day gets its own folder; the first is never rewritten.
    assertEquals(snapshotName(root, "2025-01-02"), "2025-01-02-2");
    const s2 = newStaging(root);
    publishSnapshot(root, s2, snapshotName(root, "2025-01-02"));
    assertEquals(readlinkSync(join(root, "latest")), "2025-01-02-2");
    assert(lstatSync(join(root, "latest")).isSymbolicLink());
    assertEquals(readdirSync(root).sort(), ["2025-01-02", "2025-01-02-2", "latest"]);
  });
});

Deno.test("pointLatest replaces the link in one rename and leaves no temporary link", () => {
  withDir((root) => {
    mkdirSync(join(root, "a"));
    mkdirSync(join(root, "b"));
    pointLatest(root, "a");
    pointLatest(root, "b");
    assertEquals(readlinkSync(join(root, "latest")), "b");
    assertEquals(readdirSync(root).sort(), ["a", "b", "latest"]);
    // A link to a snapshot that is gone is no snapshot.
    rmSync(join(root, "b"), { recursive: true });
    assertEquals(latestSnapshot(root), null);
  });
});

Deno.test("linkUnchanged shares equal files with the previous snapshot and copies the rest", () => {
  withDir((root) => {
    for (const d of ["prev/t", "cur/t"]) mkdirSync(join(root, d), { recursive: true });
    writeFileSync(join(root, "prev/t/same.csv"), "a,b\n");
    writeFileSync(join(root, "cur/t/same.csv"), "a,b\n");
    writeFileSync(join(root, "prev/t/moved.csv"), "a,b\n1,2\n");
    writeFileSync(join(root, "cur/t/moved.csv"), "a,b\n1,3\n");
    writeFileSync(join(root, "cur/t/new.csv"), "x\n");
    assertEquals(linkUnchanged(join(root, "prev"), join(root, "cur")), 1);
    assertEquals(
      statSync(join(root, "cur/t/same.csv")).ino,
      statSync(join(root, "prev/t/same.csv")).ino,
    );
    assert(
      statSync(join(root, "cur/t/moved.csv")).ino !== statSync(join(root, "prev/t/moved.csv")).ino,
    );
    assert(existsSync(join(root, "cur/t/new.csv")));
  });
});

Deno.test("staging left by a night that died is removed once it is old; a fresh one is kept", () => {
  withDir((root) => {
    const old = newStaging(root);
    const old2 = join(root, ".staging-old");
    mkdirSync(old2);
    const past = new Date(Date.now() - 2 * 3600_000);
    utimesSync(old2, past, past);
    symlinkSync("x", join(root, "latest"));
    removeStaleStaging(root);
    assert(existsSync(old) && !existsSync(old2));
  });
});
