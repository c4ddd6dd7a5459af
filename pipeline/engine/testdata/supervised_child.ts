/**
 * Runs the `groups` test stage the way the CLI runs a pipeline (superviseRun: the reaper, and
 * SIGINT/SIGTERM stopping the run) and prints `{reports, stoppedAt, by}` as JSON; exits like the
 * CLI (130/143 when stopped by a signal). Args: STORE ITEMS_JSON.
 */
import { runPipeline } from "../dag.ts";
import { exitCodeFor, superviseRun } from "../interrupt.ts";
import { REPO_ROOT } from "../paths.ts";
import { Store } from "../store.ts";
import { FAKE_TOOLCHAIN } from "./engine_stages.ts";
import { groups } from "./process_stages.ts";

const [storeDir, items] = Deno.args;
const guard = superviseRun(() => {});
const store = new Store(storeDir);
const release = await store.lock();
let code = 0;
try {
  const { reports, stoppedAt } = await runPipeline({
    root: REPO_ROOT,
    store,
    stages: [groups],
    rawParams: { groups: { items: JSON.parse(items) } },
    toolchain: FAKE_TOOLCHAIN,
    log: () => {},
    signal: guard.signal,
  });
  const by = guard.stoppedBy();
  console.log(JSON.stringify({ reports, stoppedAt: stoppedAt ?? null, by }));
  if (by) code = exitCodeFor(by);
} finally {
  release();
  guard.dispose();
}
Deno.exit(code);
