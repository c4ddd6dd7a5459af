/**
 * The sbatch scripts `tp slurm` writes into its folder: a template as much as a program, so that a
 * site can read them, add its own #SBATCH lines and submit them by hand.
 *
 *   prepare.sbatch   the pure stages once (definitions … generate) into DIR/base
 *   shards.sbatch    an array job, one task per shard: imports DIR/base into its own store
 *                    DIR/shards/$I/store, runs `reproduce --shard $I/N`, writes DIR/shards/$I/status
 *   merge.sbatch     after every task: merges the shards' stores into the store (`tp slurm --merge`)
 *                    and, when every shard finished, runs the stages after the judging ones
 *                    (apply, aggregate)
 *
 * Every status file holds the exit status of the tracepipe run it records; a task stopped by Slurm
 * (scancel, preemption, time limit: SIGTERM first) exits 143 with its finished cells kept, and a task
 * killed outright leaves no status: either way `tp slurm --resubmit` runs it again, and its store
 * turns every finished cell into a cache hit.
 */
import { join } from "node:path";
import { JUDGING_STAGES } from "./shard.ts";

/** What the scripts are written for. */
export interface SlurmLayout {
  /** The folder on shared storage holding the scripts, the shards' stores, statuses and logs. */
  dir: string;
  /** The store the merge job imports the shards into (on shared storage). */
  store: string;
  /** The repository checkout the jobs run (on shared storage). */
  repo: string;
  shards: number;
  /** `--gres=gpu:K` per task (0: none, a CPU profile). */
  gpusPerTask: number;
  cpusPerTask?: number;
  partition?: string;
  /** The shard tasks' time limit (sbatch --time). */
  time?: string;
  /** More `#SBATCH` options, for every job (e.g. `--account=proj`). */
  sbatchArgs: string[];
  /** Options every `reproduce` of the jobs gets: --profile, --set, --corpus, --lock-clocks. */
  reproduceArgs: string[];
}

/** The folder's files, by role. */
export const slurmFiles = (dir: string) => ({
  prepare: join(dir, "prepare.sbatch"),
  shards: join(dir, "shards.sbatch"),
  merge: join(dir, "merge.sbatch"),
  submission: join(dir, "submission.json"),
  layout: join(dir, "layout.json"),
  base: join(dir, "base"),
  prepareStatus: join(dir, "prepare.status"),
  mergeStatus: join(dir, "merge.status"),
  shard: (i: number) => join(dir, "shards", String(i)),
  logs: join(dir, "logs"),
});

/** A word for bash: as it is when it needs no quoting, else single-quoted. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_/.,:=@%+-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

const words = (xs: string[]) => xs.map(shellQuote).join(" ");

/** The stages around the judging ones: the last before them and the first after them. */
export function stagesAround(stageNames: string[]): { before: string; after?: string } {
  const first = stageNames.indexOf(JUDGING_STAGES[0]);
  const last = stageNames.indexOf(JUDGING_STAGES[JUDGING_STAGES.length - 1]);
  return { before: stageNames[first - 1], after: stageNames[last + 1] };
}

function header(l: SlurmLayout, name: string, log: string, extra: string[] = []): string[] {
  return [
    "#!/bin/bash",
    `#SBATCH --job-name=${name}`,
    `#SBATCH --output=${join(l.dir, "logs", log)}`,
    ...(l.partition ? [`#SBATCH --partition=${l.partition}`] : []),
    ...extra.map((o) => `#SBATCH ${o}`),
    ...l.sbatchArgs.map((o) => `#SBATCH ${o}`),
    "set -u",
    `tp() { ${shellQuote(join(l.repo, "tools", "deno"))} run -A ${
      shellQuote(join(l.repo, "pipeline", "cli.ts"))
    } "$@"; }`,
    `cd ${shellQuote(l.repo)} || exit 2`,
  ];
}

/** prepare.sbatch: the stages before the judging ones, once, into DIR/base. */
export function prepareScript(l: SlurmLayout, stageNames: string[]): string {
  const f = slurmFiles(l.dir);
  const base = shellQuote(f.base);
  return [
    ...header(l, "tp-prepare", "prepare-%j.out"),
    "# Only this job writes the base store, and only one of it runs: a lock left by a killed one is stale.",
    `rm -f ${base}/lock ${shellQuote(f.prepareStatus)}`,
    `tp reproduce --to ${stagesAround(stageNames).before} --store ${base} ${
      words(l.reproduceArgs)
    }`,
    "rc=$?",
    `echo "$rc" > ${shellQuote(f.prepareStatus)}`,
    'exit "$rc"',
    "",
  ].join("\n");
}

/** shards.sbatch: one array task per shard of the judging stages. */
export function shardsScript(l: SlurmLayout): string {
  const f = slurmFiles(l.dir);
  const extra = [
    `--array=0-${l.shards - 1}`,
    ...(l.gpusPerTask > 0 ? [`--gres=gpu:${l.gpusPerTask}`] : []),
    ...(l.cpusPerTask ? [`--cpus-per-task=${l.cpusPerTask}`] : []),
    ...(l.time ? [`--time=${l.time}`] : []),
  ];
  return [
    ...header(l, "tp-shards", "shard-%a-%A.out", extra),
    'i="${SLURM_ARRAY_TASK_ID:?submit this script as an array job}"',
    `shard=${shellQuote(join(l.dir, "shards"))}/"$i"`,
    'mkdir -p "$shard"',
    "# tp slurm submits a task only when no job of its submission is queued: a lock is stale.",
    'rm -f "$shard/status" "$shard/store/lock"',
    "# Slurm's SIGTERM (scancel, preemption, time limit) reaches tracepipe too, which stops cleanly",
    "# (finished cells kept, exit 143); this shell waits for it, records its status and goes no further.",
    "stopped=",
    `trap 'stopped=1; echo "tp slurm: SIGTERM: stopping; finished cells are kept" >&2' TERM`,
    `if [ -d ${shellQuote(f.base)}/runs ]; then`,
    `  tp import ${shellQuote(f.base)} --store "$shard/store"`,
    "  rc=$?",
    '  if [ "$rc" != 0 ] || [ -n "$stopped" ]; then',
    '    [ -n "$stopped" ] && rc=143',
    '    echo "$rc" > "$shard/status"; exit "$rc"',
    "  fi",
    "fi",
    `tp reproduce --shard "$i/${l.shards}" --store "$shard/store" ${words(l.reproduceArgs)}`,
    "rc=$?",
    'echo "$rc" > "$shard/status"',
    'exit "$rc"',
    "",
  ].join("\n");
}

/** merge.sbatch: merges every shard's store, then runs the stages after the judging ones. */
export function mergeScript(l: SlurmLayout, stageNames: string[]): string {
  const status = shellQuote(slurmFiles(l.dir).mergeStatus);
  const after = stagesAround(stageNames).after;
  return [
    ...header(l, "tp-merge", "merge-%j.out"),
    `rm -f ${status}`,
    "# Every shard's store into the store (DIR/layout.json names it), each stage's run the union of",
    "# the shards' runs; exit 1, naming them, while some shard has not finished.",
    `tp slurm --merge --dir ${shellQuote(l.dir)}`,
    "rc=$?",
    ...(after
      ? [
        'if [ "$rc" = 0 ]; then',
        `  tp reproduce --from ${after} --store ${shellQuote(l.store)} --wait ${
          words(l.reproduceArgs)
        }`,
        "  rc=$?",
        "fi",
      ]
      : []),
    `echo "$rc" > ${status}`,
    'exit "$rc"',
    "",
  ].join("\n");
}
