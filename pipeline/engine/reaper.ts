/**
 * The reaper: a small shell process that outlives the pipeline process by a moment and cleans up
 * after it, however it ended (normal exit, an exception, a second Ctrl-C, SIGTERM, or a SIGKILL
 * that no handler sees).
 *
 * Every process the run starts inherits a marker in its environment (`TP_RUN_ID=<uuid>`; not
 * `TRACEPIPE_…`, which the judge strips from its workers), and the reaper holds the read end of a
 * pipe whose only write end is the pipeline process's: the kernel closes it when the process is gone,
 * however it died. The reaper then gives the marked processes a moment to leave by themselves (an
 * idle judge exits at the end of its input), SIGKILLs what is left (judges, their workers in their own
 * sessions, compilers), and runs the commands registered with {@link atProcessExit} (unlocking the GPU
 * clocks). It needs Linux's /proc; elsewhere nothing is started.
 */
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The environment variable that marks every process of a run. */
export const RUN_MARKER = "TP_RUN_ID";

// $1: the run id, $2: the file of commands to run afterwards. `cat` returns when the pipeline
// process's end of stdin closes. Marked processes get 3 s to exit on their own, then SIGKILL
// (a few rounds: a fork server may fork while being killed).
const SCRIPT = `
trap '' INT TERM HUP
id=$1; cleanup=$2
cat >/dev/null 2>&1
marked() { grep -lzx "${RUN_MARKER}=$id" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3; }
i=0
while [ $i -lt 15 ] && [ -n "$(marked)" ]; do sleep 0.2; i=$((i + 1)); done
for round in 1 2 3 4 5; do
  pids=$(marked)
  [ -z "$pids" ] && break
  kill -KILL $pids 2>/dev/null
  sleep 0.1
done
if [ -f "$cleanup" ]; then sh "$cleanup" >/dev/null 2>&1; rm -f "$cleanup"; fi
`;

let reaper: { id: string; cleanupFile: string } | null = null;
const exitCommands = new Map<number, string[]>();
let nextToken = 0;

/**
 * Starts this process's reaper (once; later calls return the same id) and marks the environment
 * that every process started from now on inherits. Returns the run id, or null where there is no
 * /proc (the reaper could not find the run's processes).
 */
export function startReaper(): string | null {
  if (reaper) return reaper.id;
  if (Deno.build.os !== "linux" || !existsSync("/proc/self/environ")) return null;
  const id = crypto.randomUUID();
  const cleanupFile = join(tmpdir(), `tp-reaper-${id}.sh`);
  const env = Deno.env.toObject();
  delete env[RUN_MARKER]; // the reaper and its grep must not match themselves
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("sh", {
      args: ["-c", SCRIPT, "tp-reaper", id, cleanupFile],
      stdin: "piped",
      stdout: "null",
      stderr: "null",
      clearEnv: true,
      env,
      detached: true, // its own session: a terminal's Ctrl-C or `timeout`'s group kill spares it
    }).spawn();
  } catch {
    return null; // no sh: nothing to reap with
  }
  child.unref(); // never keeps the pipeline process alive; its stdin closes when this process ends
  Deno.env.set(RUN_MARKER, id);
  reaper = { id, cleanupFile };
  return id;
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

function writeCleanup(): void {
  if (!reaper) return;
  if (exitCommands.size === 0) {
    rmSync(reaper.cleanupFile, { force: true });
    return;
  }
  const lines = [...exitCommands.values()].map((argv) => argv.map(quote).join(" "));
  writeFileSync(reaper.cleanupFile, lines.join("\n") + "\n");
}

/**
 * Registers a command the reaper runs after this process ends, however it ends (for example
 * `nvidia-smi -rgc` after locking the clocks). Returns a function that unregisters it (call it
 * once the command has been run in the normal way). Without a reaper this records nothing.
 */
export function atProcessExit(argv: string[]): () => void {
  if (!reaper) return () => {};
  const token = nextToken++;
  exitCommands.set(token, argv);
  writeCleanup();
  return () => {
    if (exitCommands.delete(token)) writeCleanup();
  };
}
