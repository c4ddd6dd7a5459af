/**
 * Stopping a run: Ctrl-C (SIGINT) and a CI cancel, `timeout`, systemd stop or Slurm preemption
 * (SIGTERM) are one and the same request. The first one aborts the run's signal: running cells
 * are stopped (their harness process groups killed), finished cells stay in the store, unfinished
 * ones are reported as interrupted. A second one exits at once, leaving the rest to the reaper
 * (reaper.ts), which also covers a SIGKILL.
 */
import { startReaper } from "./reaper.ts";

/** The signals that stop a run. */
export const STOP_SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM"];

/** The exit status of a process stopped by `sig` (128 + its number, as a shell reports it). */
export const exitCodeFor = (sig: Deno.Signal): number => sig === "SIGINT" ? 130 : 143;

/** A run's stop request. */
export interface Interruption {
  /** Aborted at the first SIGINT or SIGTERM. */
  signal: AbortSignal;
  /** The signal that stopped the run, or null. */
  stoppedBy(): Deno.Signal | null;
  /** Stops listening (the default action of the signals applies again). */
  dispose(): void;
}

/**
 * Listens for SIGINT and SIGTERM until disposed. With `exitOnSecond`, a second signal exits the
 * process at once (after `log`ging why): the user asked twice.
 */
export function interruptOnSignals(
  opts: { exitOnSecond?: boolean; log?: (line: string) => void } = {},
): Interruption {
  const abort = new AbortController();
  let by: Deno.Signal | null = null;
  const handlers = STOP_SIGNALS.map((sig) => {
    const handler = () => {
      if (by !== null && opts.exitOnSecond) {
        opts.log?.(`${sig} again: exiting now (the run's processes are killed on the way out)`);
        Deno.exit(exitCodeFor(sig));
      }
      if (by !== null) return;
      by = sig;
      opts.log?.(
        `${sig}: stopping; finished cells are kept, unfinished ones run next time` +
          (opts.exitOnSecond
            ? ` (${sig === "SIGINT" ? "Ctrl-C" : sig} again to exit at once)`
            : ""),
      );
      abort.abort(new Error(`interrupted by ${sig}`));
    };
    try {
      Deno.addSignalListener(sig, handler);
      return [sig, handler] as const;
    } catch {
      return null; // signals unsupported here (Windows: SIGTERM)
    }
  }).filter((h) => h !== null);
  return {
    signal: abort.signal,
    stoppedBy: () => by,
    dispose() {
      for (const [sig, handler] of handlers) {
        try {
          Deno.removeSignalListener(sig, handler);
        } catch { /* unsupported */ }
      }
    },
  };
}

/**
 * What a command that runs cells does first: starts the reaper (so nothing the run starts outlives
 * it, whatever ends it) and listens for SIGINT and SIGTERM, a second one exiting at once.
 */
export function superviseRun(log: (line: string) => void): Interruption {
  startReaper();
  return interruptOnSignals({ exitOnSecond: true, log });
}
