/**
 * The committed fixture campaign: the fake model (fake_llm.ts) writing a Python RMSNorm for
 * `rmsnorm_h128` in 3 rounds. Its recordings live in data/llm-recordings/, its inputs and the
 * expected cell output in data/llm-recordings/campaigns/fake-rmsnorm_h128-python/. Regenerate
 * with `deno run --allow-all stages/generate/llm/record_fixture.ts`.
 */
import { join } from "node:path";
import type { CellJob, CellPlan, PlanContext, Toolchain } from "../../../pipeline/engine/mod.ts";
import { GenerateParams } from "../stage.ts";

/** Folder of the fixture's inputs and expected output, relative to the repository root. */
export const FIXTURE_DIR = "data/llm-recordings/campaigns/fake-rmsnorm_h128-python";

/** The fixture's stage params (LLM backend only). */
export function fixtureParams(
  recordings = "data/llm-recordings",
  mode: "auto" | "replay" = "replay",
): GenerateParams {
  return GenerateParams.parse({
    corpus: [],
    kernels: { roots: [] },
    llm: {
      campaigns: [{ definition: "rmsnorm_h128", language: "python", model: "fake-rmsnorm-1" }],
      rounds: 3,
      hardware: "H100",
      temperature: 0,
      max_tokens: 4096,
      recordings,
      mode,
      backoffMs: 1,
      maxRetries: 2,
      timeoutMs: 10_000,
    },
  });
}

/** A plan context whose definitions upstream is the fixture's input TraceSet. */
export function fixtureContext(
  root: string,
  params: GenerateParams,
  log: (m: string) => void = () => {},
): PlanContext<GenerateParams> {
  const toolchain: Toolchain = { os: "linux", arch: "x86_64", deno: Deno.version.deno, gpus: [] };
  return {
    params,
    root,
    upstream: {
      definitions: [{
        id: "all",
        key: "fixture",
        digest: "fixture",
        dir: join(root, FIXTURE_DIR, "input"),
        summary: null,
      }],
    },
    toolchain,
    env: {},
    log,
  };
}

/** The job of running `plan` into `outDir`, as the engine would give it (never aborted). */
export function fixtureJob(
  plan: CellPlan,
  outDir: string,
  key = "k",
  log: (m: string) => void = () => {},
): CellJob {
  return { plan, key, outDir, log, setSummary: () => {}, signal: new AbortController().signal };
}
