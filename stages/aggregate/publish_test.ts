/**
 * Publishing: an ordinary run publishes into reports/latest/ beside the committed report (reports/
 * itself in a tree that has none);
 * republishing removes what the previous publish wrote, folders it leaves empty included, and keeps
 * what others put there (reports/latest/ inside reports/).
 */
import { assert, assertEquals } from "../../tests/assert.ts";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { aggregateStage, PUBLISH_DIR, publishReports, SHIPPED_MARKER } from "./stage.ts";
import { SHIPPED_MARKER_TITLE } from "./marker.ts";

function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "publish-"));
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(join(dir, p, ".."), { recursive: true });
    writeFileSync(join(dir, p), text);
  }
  return dir;
}

Deno.test("republishing removes the previous files and the folders they leave empty", () => {
  const a = tree({ "index.html": "a", "traces/x/y/t.jsonl": "t" });
  const b = tree({ "index.html": "b" });
  const reports = tree({ "latest/index.html": "someone else's" });
  try {
    publishReports(a, reports);
    assert(existsSync(join(reports, "traces/x/y/t.jsonl")));
    publishReports(b, reports);
    assertEquals(existsSync(join(reports, "traces")), false, "the emptied folders are gone");
    assert(existsSync(join(reports, "latest/index.html")), "what others put there stays");
  } finally {
    for (const d of [a, b, reports]) rmSync(d, { recursive: true, force: true });
  }
});

Deno.test("an ordinary run publishes beside the committed report (reports/latest/), never over it", async () => {
  const cell = tree({ "index.html": "this machine" });
  const marked = `${SHIPPED_MARKER_TITLE}\n\nthe committed report\n`;
  const committed = tree({ "reports/index.html": "committed", [SHIPPED_MARKER]: marked });
  const scratch = tree({ "data/x": "a tree without a committed report" });
  try {
    const publish = (root: string) =>
      aggregateStage.publish!({
        cells: [{ id: "report", key: "k", digest: "d", dir: cell, summary: null }],
        root,
        log: () => {},
      });
    await publish(committed);
    assertEquals(PUBLISH_DIR, "reports/latest");
    assertEquals(Deno.readTextFileSync(join(committed, "reports/index.html")), "committed");
    assertEquals(Deno.readTextFileSync(join(committed, PUBLISH_DIR, "index.html")), "this machine");
    // A refresh night's staging folder or a scratch copy has no committed report: reports/ itself.
    await publish(scratch);
    assertEquals(Deno.readTextFileSync(join(scratch, "reports/index.html")), "this machine");
  } finally {
    for (const d of [cell, committed, scratch]) rmSync(d, { recursive: true, force: true });
  }
});
