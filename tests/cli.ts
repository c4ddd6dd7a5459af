/**
 * Runs the command line (`tp`, pipeline/cli.ts) as a user would, in a process of its own, and
 * captures what it says: the one way the tests run the CLI.
 */
import { join } from "node:path";
import { REPO_ROOT } from "../pipeline/engine/mod.ts";

/** This checkout's CLI module. */
export const CLI = join(REPO_ROOT, "pipeline", "cli.ts");

/** What a run of the CLI gave. */
export interface CliRun {
  /** The exit code. */
  code: number;
  /** Standard output. */
  out: string;
  /** Standard error. */
  err: string;
  /** Standard output followed by standard error. */
  text: string;
  /** Wall time of the run, in seconds. */
  seconds: number;
}

/** Where and how to run it; every field is optional. */
export interface CliOptions {
  /** Variables added to the environment the child inherits. */
  env?: Record<string, string>;
  /** The working directory (default: the test's). */
  cwd?: string;
  /** The checkout whose pipeline/cli.ts runs (default: this one). */
  repo?: string;
  /** The Deno that runs it (default: the one running the test). */
  deno?: string;
}

/** Runs `tp <args>` and waits for it to exit. */
export async function runCli(args: string[], opts: CliOptions = {}): Promise<CliRun> {
  const t0 = performance.now();
  const r = await new Deno.Command(opts.deno ?? Deno.execPath(), {
    args: ["run", "-A", opts.repo ? join(opts.repo, "pipeline", "cli.ts") : CLI, ...args],
    env: opts.env,
    cwd: opts.cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const out = new TextDecoder().decode(r.stdout), err = new TextDecoder().decode(r.stderr);
  return { code: r.code, out, err, text: out + err, seconds: (performance.now() - t0) / 1000 };
}
