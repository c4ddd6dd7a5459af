/**
 * verify over the lanes of two (fake) GPUs, through the engine, on the CPU with real PyTorch: the
 * jobs spread over both GPUs, each cell's provenance names the GPU that judged it, and which GPUs a
 * run uses is in no cell key (a second run limited to GPU 1 finds every cell cached).
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { discoverToolchain, REPO_ROOT, runPipeline, Store } from "../../pipeline/engine/mod.ts";
import { Solution } from "../../pipeline/trace/mod.ts";
import { closeSharedSessions, GPUS_ENV } from "../../pipeline/harness/mod.ts";
import { fakeGpuEnv, withEnv } from "../../pipeline/harness/testdata/lanes.ts";
import { assertEquals } from "../../tests/assert.ts";
import { rmsnormSolution, rmsnormUpstream } from "../../tests/fixtures/rmsnorm.ts";
import { registered } from "../../tests/stages.ts";
import { compileStage } from "../compile/mod.ts";
import { verifyStage } from "./mod.ts";

const tc = await discoverToolchain();
const skip = !tc.python?.torch;
if (skip) console.log("skipping verify over fake GPU lanes: no Python with torch");

Deno.test({
  name:
    "verify on two fake GPUs: jobs on both, each cell's provenance names its GPU, no key holds it",
  ignore: skip,
  async fn() {
    const solutions = ["honest_a", "honest_b", "honest_c"].map((n) =>
      Solution.parse(rmsnormSolution(n))
    );
    const workloads = [4, 8].map((b) => ({ axes: { batch_size: b }, inputs: {}, uuid: `b${b}` }));
    const stages = [
      ...rmsnormUpstream(workloads, solutions),
      registered(compileStage),
      registered(verifyStage),
    ];
    const store = new Store(mkdtempSync(join(tmpdir(), "tp-verify-lanes-")));
    const { env } = fakeGpuEnv("0:H100,1:H100");
    const run = (more: Record<string, string | undefined> = {}) =>
      withEnv({ ...env, ...more }, () =>
        runPipeline({
          root: REPO_ROOT,
          store,
          stages,
          rawParams: { verify: { num_trials: 1, parallel_processes: 1 } },
          toolchain: tc,
          log: () => {},
        })).finally(closeSharedSessions);

    const first = (await run()).reports.find((r) => r.stage === "verify")!;
    assertEquals([first.ran, first.failed], [6, []]);
    const gpus = store.lastResults("verify")!.map((c) => {
      const record = JSON.parse(readFileSync(join(c.dir, "..", "cell.json"), "utf8"));
      assertEquals(record.summary.status, "PASSED", c.id);
      return record.provenance.stage.gpu as { index: number; name: string; uuid: string };
    });
    assertEquals(new Set(gpus.map((g) => g.index)), new Set([0, 1]), "both GPUs judged cells");
    for (const g of gpus) {
      assertEquals(g, { index: g.index, name: "H100", uuid: `fake-${g.index}` });
    }

    const again = (await run({ [GPUS_ENV]: "1" })).reports.find((r) => r.stage === "verify")!;
    assertEquals([again.ran, again.hits], [0, 6], "the GPUs chosen are in no cell key");
  },
});
