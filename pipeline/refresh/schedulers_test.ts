/** Both schedulers, the GitHub workflow and the systemd service, run the same `tp refresh` command. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import { REPO_ROOT } from "../engine/mod.ts";

const read = (p: string) => readFileSync(join(REPO_ROOT, p), "utf8");
const commandOf = (text: string) =>
  text.match(/^\s*(?:ExecStart=)?(npx deno task tp refresh\b.*)$/m)?.[1];

Deno.test("the nightly workflow and the systemd service call the same refresh command on a schedule", () => {
  const workflow = read(".github/workflows/nightly.yml");
  const service = read("tools/systemd/tracepipe-refresh.service");
  const timer = read("tools/systemd/tracepipe-refresh.timer");
  assertMatch(workflow, /^on:\n(?:.*\n)*?\s+schedule:\n\s+- cron: "[^"]+"/m);
  assertMatch(workflow, /runs-on: \[self-hosted, [^\]]*gpu\]/);
  assertMatch(timer, /^OnCalendar=.+$/m);
  assertMatch(service, /^Type=oneshot$/m);
  const a = commandOf(workflow), b = commandOf(service);
  assert(a !== undefined && b !== undefined, `${a} / ${b}`);
  assertEquals(a, b);
  // The store and the snapshots must outlive the job for the next night to be incremental.
  for (const flag of ["--store", "--snapshots", "--cache"]) assert(a.includes(flag), flag);
});
