/** The sources file and the lock: every problem is one line naming the file, the JSON path and why. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertThrows } from "../../tests/assert.ts";
import { runCli } from "../../tests/cli.ts";
import { REPO_ROOT } from "../engine/mod.ts";
import { loadLock, loadSources, lockPathFor, RefreshInputError } from "./sources.ts";

const SHA = "a".repeat(64);

function withFile(text: string, f: (path: string) => void) {
  const dir = mkdtempSync(join(tmpdir(), "tp-sources-"));
  try {
    writeFileSync(join(dir, "sources.json"), text);
    f(join(dir, "sources.json"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

Deno.test("the committed example sources file is valid, with the defaults filled in", () => {
  const s = loadSources(join(REPO_ROOT, "refresh", "sources.json"));
  assert(s.traceSets.length >= 1 && s.servingTraces.length >= 1);
  assertEquals(s.profile, "profiles/default.json");
  assertEquals(s.snapshots, ".tracepipe/snapshots");
  assertEquals(lockPathFor("refresh/sources.json"), "refresh/sources.lock.json");
});

Deno.test("defaults: ref main, path the root, the default profile and snapshot folder", () => {
  withFile(JSON.stringify({ traceSets: [{ name: "a", git: "/x" }] }), (p) => {
    const s = loadSources(p, "s.json");
    assertEquals(s.traceSets[0], { name: "a", git: "/x", ref: "main", path: "" });
    assertEquals([s.profile, s.set, s.changelog.minRelChange], ["profiles/default.json", [], 0.03]);
  });
});

Deno.test("a bad sources file is reported as file: $.path: reason, one line per problem", () => {
  const cases: Array<[unknown, RegExp]> = [
    [
      { traceSets: [{ name: "a", git: "/x", dir: "/y" }] },
      /^s\.json: \$\.traceSets\[0\]: give exactly one of git/,
    ],
    [{ traceSets: [{ name: "a" }] }, /^s\.json: \$\.traceSets\[0\]: give exactly one of git/],
    [
      { traceSets: [{ name: "a b", git: "/x" }] },
      /^s\.json: \$\.traceSets\[0\]\.name: letters, digits/,
    ],
    [
      { traceSets: [{ name: "a", git: "/x", path: "../up" }] },
      /^s\.json: \$\.traceSets\[0\]\.path: must stay inside/,
    ],
    [
      { traceSets: [{ name: "a", git: "/x" }, { name: "a", git: "/y" }] },
      /^s\.json: \$\.traceSets\[1\]\.name: duplicate name "a"/,
    ],
    [{ tracesets: [] }, /^s\.json: \$: Unrecognized key: "tracesets"/],
    [
      { servingTraces: [{ name: "t", path: "x.csv", format: "azure-csv" }] },
      /^s\.json: \$\.servingTraces\[0\]\.sha256: /,
    ],
    [
      { servingTraces: [{ name: "t", path: "x.csv", sha256: "ABC", format: "azure-csv" }] },
      /^s\.json: \$\.servingTraces\[0\]\.sha256: a sha256 in lower-case hex/,
    ],
    [
      { servingTraces: [{ name: "t", sha256: SHA, format: "azure-csv" }] },
      /^s\.json: \$\.servingTraces\[0\]: give exactly one of path or url/,
    ],
    [{ set: ["generate"] }, /^s\.json: \$\.set\[0\]: expected STAGE\.KEY=VALUE/],
    [{ changelog: { minRelChange: -1 } }, /^s\.json: \$\.changelog\.minRelChange: /],
  ];
  for (const [doc, re] of cases) {
    withFile(JSON.stringify(doc), (p) => {
      const e = assertThrows(() => loadSources(p, "s.json"));
      assert(e instanceof RefreshInputError, String(e));
      assertMatch(e.message, re, JSON.stringify(doc));
      assert(!e.message.includes("\n"), `one line: ${e.message}`);
    });
  }
});

Deno.test("malformed JSON and a missing file name the file", () => {
  withFile('{"traceSets": [', (p) => {
    assertMatch(
      assertThrows(() => loadSources(p, "s.json")).message,
      /^s\.json: \$: malformed JSON/,
    );
  });
  assertMatch(
    assertThrows(() => loadSources("/nonexistent/sources.json", "x.json")).message,
    /^x\.json: \$: the sources file does not exist/,
  );
  withFile("{}", (p) => {
    assertMatch(assertThrows(() => loadLock(p, "l.json")).message, /^l\.json: \$\.format: /);
  });
});

Deno.test("tp refresh with a bad sources file: one line, exit 2, no stack trace", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-sources-cli-"));
  try {
    writeFileSync(
      join(dir, "s.json"),
      JSON.stringify({ traceSets: [{ name: "a", git: "/x", ref: "" }] }),
    );
    const run = (...args: string[]) => runCli(["refresh", ...args, "--store", join(dir, "st")]);
    const bad = await run("--sources", join(dir, "s.json"));
    assertEquals(bad.code, 2, bad.err);
    assertMatch(bad.err, /s\.json: \$\.traceSets\[0\]\.ref: /);
    assert(!/\n\s+at /.test(bad.err), bad.err);
    const flag = await run("--nonsense");
    assertEquals(flag.code, 2, flag.err);
    assertMatch(flag.err, /error: refresh: .*nonsense/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
