/**
 * Runs the test stages against a store given on the command line and prints the stage reports as
 * JSON (used by dag_test.ts).
 */
import { runPipeline } from "../dag.ts";
import { Store } from "../store.ts";
import { FAKE_TOOLCHAIN, letters, shout } from "./engine_stages.ts";

const [storeDir, items] = Deno.args;
const store = new Store(storeDir);
const release = await store.lock();
try {
  const { reports } = await runPipeline({
    root: new URL("../..", import.meta.url).pathname,
    store,
    stages: [letters, shout],
    rawParams: { letters: { items: JSON.parse(items) } },
    toolchain: FAKE_TOOLCHAIN,
    log: () => {},
  });
  console.log(JSON.stringify(reports));
} finally {
  release();
}
