/**
 * Fetching pins every upstream: a git TraceSet (local path or file:// URL) to a commit, re-read
 * exactly from a lock after the upstream moved on; a plain folder to its content digest; a
 * serving-trace file to its sha256. Problems name the sources file and the field.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { assert, assertEquals, assertMatch, assertRejects } from "../../tests/assert.ts";
import { sha256 } from "../engine/mod.ts";
import { fetchServingTrace, fetchTraceSet, folderDigest, gitUrl } from "./fetch.ts";
import { RefreshInputError } from "./sources.ts";

const gitOk = await new Deno.Command("git", { args: ["--version"], stdout: "null", stderr: "null" })
  .output().then((r) => r.success, () => false);
if (!gitOk) console.log("skipping the git fetch tests: no git binary");

async function git(cwd: string, ...args: string[]): Promise<string> {
  const r = await new Deno.Command("git", {
    args: ["-c", "user.email=t@t", "-c", "user.name=t", ...args],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert(r.success, new TextDecoder().decode(r.stderr));
  return new TextDecoder().decode(r.stdout).trim();
}

function put(root: string, rel: string, text: string) {
  mkdirSync(join(root, rel, ".."), { recursive: true });
  writeFileSync(join(root, rel), text);
}

async function withTmp(f: (dir: string) => Promise<void>) {
  const dir = mkdtempSync(join(tmpdir(), "tp-fetch-"));
  try {
    await f(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const ctxFor = (dir: string) => ({
  root: dir,
  cache: join(dir, "cache"),
  shown: "s.json",
  log: () => {},
});

Deno.test({
  name:
    "a git TraceSet: ref resolved to a commit, sub-folder exported under the source's name, lock re-read",
  ignore: !gitOk,
  async fn() {
    await withTmp(async (dir) => {
      const repo = join(dir, "up");
      mkdirSync(repo);
      await git(repo, "init", "-q", "-b", "main");
      put(repo, "set/solutions/a.json", "{}\n");
      put(repo, "README", "not part of the set\n");
      await git(repo, "add", "-A");
      await git(repo, "commit", "-qm", "one");
      const first = await git(repo, "rev-parse", "HEAD");
      const ctx = ctxFor(dir);
      // A relative local path, resolved against the root.
      const src = { name: "corp", git: "up", ref: "main", path: "set" };
      const a = await fetchTraceSet(src, 0, ctx);
      assertEquals(a.locked.commit, first);
      assertEquals(basename(a.dir), "corp");
      assertEquals(readFileSync(join(a.dir, "solutions/a.json"), "utf8"), "{}\n");
      assert(!existsSync(join(a.dir, "README")));

      put(repo, "set/solutions/b.json", "{}\n");
      await git(repo, "add", "-A");
      await git(repo, "commit", "-qm", "two");
      // Through a file:// URL this time: the same repository, a new commit.
      const b = await fetchTraceSet({ ...src, git: `file://${repo}` }, 0, ctx);
      assert(b.locked.commit !== first && existsSync(join(b.dir, "solutions/b.json")));
      // The lock of the first night reads the first commit, though main has moved on.
      const again = await fetchTraceSet(src, 0, ctx, a.locked);
      assertEquals([again.locked.commit, again.dir], [first, a.dir]);
      assert(!existsSync(join(again.dir, "solutions/b.json")));

      const missing = await assertRejects(
        () => fetchTraceSet({ ...src, path: "nope" }, 2, ctx),
      );
      assert(missing instanceof RefreshInputError);
      assertMatch(
        missing.message,
        /^s\.json: \$\.traceSets\[2\]\.path: "nope" is not a folder at [0-9a-f]{40}/,
      );
      const badRef = await assertRejects(() =>
        fetchTraceSet({ ...src, ref: "no-such-branch" }, 1, ctx)
      );
      assertMatch(
        badRef.message,
        /^s\.json: \$\.traceSets\[1\]\.ref: cannot fetch "no-such-branch" from /,
      );
    });
  },
});

Deno.test("gitUrl: URLs and scp-like addresses pass, local paths become absolute", () => {
  assertEquals(gitUrl("https://h/x.git", "/r"), "https://h/x.git");
  assertEquals(gitUrl("file:///srv/x", "/r"), "file:///srv/x");
  assertEquals(gitUrl("git@github.com:o/x.git", "/r"), "git@github.com:o/x.git");
  assertEquals(gitUrl("../x", "/r/a"), "/r/x");
  assertEquals(gitUrl("/abs/x", "/r"), "/abs/x");
});

Deno.test("a plain folder is pinned by its content digest; its copy serves a re-run after it changed", async () => {
  await withTmp(async (dir) => {
    put(dir, "corpus/solutions/a.json", "{}\n");
    const ctx = ctxFor(dir);
    const src = { name: "local", dir: "corpus", ref: "main", path: "" };
    const a = await fetchTraceSet(src, 0, ctx);
    assertEquals(a.locked.digest, folderDigest(join(dir, "corpus")));
    put(dir, "corpus/solutions/a.json", '{"changed": true}\n');
    const b = await fetchTraceSet(src, 0, ctx);
    assert(b.locked.digest !== a.locked.digest);
    const again = await fetchTraceSet(src, 0, ctx, a.locked);
    assertEquals(readFileSync(join(again.dir, "solutions/a.json"), "utf8"), "{}\n");
    // Without the copy, a changed folder cannot be re-run exactly: said, not guessed.
    rmSync(join(dir, "cache"), { recursive: true });
    const e = await assertRejects(() => fetchTraceSet(src, 0, ctx, a.locked));
    assertMatch(
      e.message,
      /^s\.json: \$\.traceSets\[0\]\.digest: .* changed since the locked night/,
    );
  });
});

Deno.test("a serving-trace file is checked against its pinned sha256, by path or by URL", async () => {
  await withTmp(async (dir) => {
    const text = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n";
    put(dir, "t.csv", text);
    const ctx = ctxFor(dir);
    const base = { name: "t", format: "azure-csv" as const, sha256: sha256(text) };
    const byPath = await fetchServingTrace({ ...base, path: "t.csv" }, 0, ctx);
    assertEquals(readFileSync(byPath.file, "utf8"), text);
    const byUrl = await fetchServingTrace({ ...base, url: `file://${join(dir, "t.csv")}` }, 0, ctx);
    assertEquals(byUrl.file, byPath.file);
    const wrong = await assertRejects(() =>
      fetchServingTrace({ ...base, sha256: "0".repeat(64), path: "t.csv" }, 1, ctx)
    );
    assertMatch(
      wrong.message,
      /^s\.json: \$\.servingTraces\[1\]\.sha256: .*t\.csv has sha256 [0-9a-f]{64}, not the pinned 0{64}/,
    );
    const gone = await assertRejects(() =>
      fetchServingTrace({ ...base, path: "none.csv" }, 0, ctx)
    );
    assertMatch(gone.message, /^s\.json: \$\.servingTraces\[0\]\.path: cannot read /);
  });
});
