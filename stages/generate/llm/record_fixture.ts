/**
 * Re-records the fixture campaign against the local fake server (no network beyond loopback, no
 * key) and rewrites its expected output. Usage: `deno run --allow-all stages/generate/llm/record_fixture.ts`.
 */
import { rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { createGenerateStage } from "../stage.ts";
import { fakeEvaluate, startFakeLlm } from "./fake_llm.ts";
import { FIXTURE_DIR, fixtureContext, fixtureJob, fixtureParams } from "./fixture.ts";

const root = resolve(new URL("../../..", import.meta.url).pathname);
const fake = startFakeLlm();
try {
  const stage = createGenerateStage({
    evaluate: fakeEvaluate,
    env: (n) => (n === "TRACEPIPE_LLM_BASE_URL" ? fake.url : undefined),
  });
  const ctx = fixtureContext(root, fixtureParams("data/llm-recordings", "auto"), console.log);
  const [plan] = await stage.plan(ctx);
  if (!plan || plan.notRunnable) throw new Error(`fixture not runnable: ${plan?.notRunnable}`);
  const outDir = join(root, FIXTURE_DIR, "expected");
  rmSync(outDir, { recursive: true, force: true });
  await stage.run!(fixtureJob(plan, outDir, "fixture", console.log), ctx);
  console.log(`recorded ${fake.received.length} request(s); expected output in ${outDir}`);
} finally {
  await fake.close();
}
