/**
 * The default `Evaluate` of the agent loop: runs the Python harness (pipeline/harness/PROTOCOL.md)
 * `verify` then, if PASSED, `time` on one workload, and turns the result into agent feedback.
 * Tests inject a fake instead; see agent.ts.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Definition, Solution, Workload } from "../../../pipeline/trace/mod.ts";
import type { Evaluate, Feedback } from "./agent.ts";
import { LlmError } from "./client.ts";

const HARNESS = "pipeline/harness/judge";

/** Builds an evaluator that calls the harness under `root` with `python` (default: python3). */
export function harnessEvaluate(
  root: string,
  python = Deno.env.get("TRACEPIPE_PYTHON") ?? "python3",
  timeoutMs = 1_800_000,
): Evaluate {
  return async (sol: Solution, def: Definition, wl: Workload): Promise<Feedback> => {
    const script = join(root, HARNESS);
    if (!existsSync(script)) {
      throw new LlmError(
        `${HARNESS} does not exist: the LLM agent needs the harness to evaluate solutions`,
      );
    }
    const dir = mkdtempSync(join(tmpdir(), "tp-agent-"));
    try {
      const run = async (command: "verify" | "time") => {
        const job = join(dir, `${command}.job.json`);
        const out = join(dir, `${command}.result.json`);
        writeFileSync(
          job,
          JSON.stringify({
            protocol: 1,
            dataset_root: root,
            definition: def,
            solutions: [sol],
            workloads: [wl],
          }),
        );
        const p = await new Deno.Command(python, {
          args: [script, command, "--job", job, "--out", out],
          cwd: root,
          stdout: "null",
          stderr: "piped",
          signal: AbortSignal.timeout(timeoutMs),
        }).output();
        if (!existsSync(out)) {
          throw new LlmError(
            `harness ${command} wrote no result (exit ${p.code}): ${
              new TextDecoder().decode(p.stderr).slice(-500)
            }`,
          );
        }
        const r = JSON.parse(readFileSync(out, "utf8"));
        if (!r.ok) throw new LlmError(`harness ${command} failed: ${r.error}`);
        return r.results?.[0] ?? null;
      };
      const v = await run("verify");
      if (!v || v.outcome !== "evaluated") {
        return {
          status: "RUNTIME_ERROR",
          log: `not evaluated: ${v?.outcome ?? "no result"} ${v?.reason ?? ""}`.trim(),
        };
      }
      const ev = v.evaluation;
      const fb: Feedback = {
        status: ev.status,
        log: ev.log ?? "",
        max_absolute_error: ev.correctness?.max_absolute_error ?? null,
        max_relative_error: ev.correctness?.max_relative_error ?? null,
      };
      if (ev.status !== "PASSED") return fb;
      const t = await run("time");
      const tev = t?.evaluation;
      if (!tev || tev.status !== "PASSED") {
        return { ...fb, status: tev?.status ?? "RUNTIME_ERROR", log: tev?.log ?? "timing failed" };
      }
      return { ...fb, ...tev.performance };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}
