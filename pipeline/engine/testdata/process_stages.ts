/**
 * A test stage that starts processes the way the judging stages do: each cell starts a "judge" in a
 * process group of its own (killed as a group when the run is interrupted, as
 * pipeline/harness/client.ts does) and a "worker" in a session of its own (as the judge's workers
 * are), which that group kill misses. A `quick` cell finishes and leaves both running (an idle judge
 * kept for the next stage); a `hang` cell waits until the run is interrupted. Each cell drops
 * `started-<id>` into TP_TEST_HANG_DIR once its processes run.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { defineStage } from "../stage.ts";
import { itemCells } from "./engine_stages.ts";

const spawnDetached = (cmd: string, args: string[]) => {
  const child = new Deno.Command(cmd, {
    args,
    detached: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  child.unref();
  return child;
};

/** One cell per item: `{ id: "quick" | "hang" }`. */
export const groups = defineStage({
  name: "groups",
  description: "starts process groups like a judging stage",
  policy: "pure",
  params: z.object({ items: z.record(z.string(), z.enum(["quick", "hang"])).default({}) }),
  upstream: [],
  env: [],
  resource: "cpu",
  module: import.meta.url,
  toolchainFacts: () => ({}),
  plan: (ctx) => itemCells(ctx.params.items, () => null),
  async run(job, ctx) {
    const judge = spawnDetached("sh", ["-c", "sleep 300 & sleep 300"]);
    const worker = spawnDetached("sleep", ["301"]);
    const dir = Deno.env.get("TP_TEST_HANG_DIR")!;
    writeFileSync(join(dir, `started-${job.plan.id}`), `${judge.pid} ${worker.pid}`);
    writeFileSync(join(job.outDir, "value.txt"), job.plan.id);
    if (ctx.params.items[job.plan.id] === "quick") return;
    await new Promise((_, reject) =>
      job.signal.addEventListener("abort", () => {
        try {
          Deno.kill(-judge.pid, "SIGKILL");
        } catch { /* gone */ }
        reject(new Error(`groups ${job.plan.id} aborted`));
      })
    );
  },
});
