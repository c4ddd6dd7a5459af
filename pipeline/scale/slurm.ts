/**
 * `tp slurm`: the judging stages as a Slurm array job, one task per shard, with the store as the
 * only meeting point. It writes the scripts of slurm_scripts.ts into a folder on shared storage,
 * submits prepare → shards (afterok) → merge (afterany) and records the job ids; `--resubmit` runs
 * again only the shards that did not finish, and `--wait` waits for the merge and returns its status.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { PipelineError, REPO_ROOT, writeFileAtomic } from "../engine/mod.ts";
import { mergeShards, readStatus } from "./merge.ts";
import {
  mergeScript,
  prepareScript,
  shardsScript,
  slurmFiles,
  type SlurmLayout,
} from "./slurm_scripts.ts";

/** What `tp slurm` records of a submission in DIR/submission.json. */
export interface Submission {
  layout: SlurmLayout;
  /** The job ids of the latest (re)submission; a job absent was not submitted that time. */
  jobs: { prepare?: string; shards?: string; merge?: string };
  /** The shards the latest (re)submission ran. */
  submittedShards: number[];
  /** Every earlier (re)submission, oldest first. */
  history: Array<{ at: string; jobs: Submission["jobs"]; shards: number[] }>;
}

/** Usage of `tp slurm`, for the CLI's help. */
export const SLURM_USAGE =
  `  slurm --shards N      run the judging stages as a Slurm array job of N shards, then merge
    [--gpus K]            GPUs per task (--gres=gpu:K; default 1, 0 for a CPU profile)
    [--dir DIR]           scripts, shard stores, statuses and logs (shared storage;
                            default .tracepipe/slurm); the store must be shared storage too
    [--cpus-per-task C] [--time T] [--partition P] [--sbatch-arg OPT]…
    [--profile F] [--set S.K=V]… [--corpus DIR]… [--lock-clocks]   passed to every reproduce
    [--write-only]        write the sbatch scripts and print how to submit them; submit nothing
    [--wait]              wait for the merge job; 0 when every shard finished and was merged
  slurm --resubmit [--dir DIR] [--time T] [--wait]
                        submit again only the shards that did not finish, and the merge
  slurm --merge [--dir DIR]   (the merge job's first step) the shards' stores into the store,
                        each stage's run the union of the shards' runs; 1 if a shard is unfinished`;

/** Runs a Slurm client command; its stdout, or a usage error naming it. */
async function slurmCli(cmd: string, args: string[]): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new PipelineError(
        `slurm: ${cmd} not found: Slurm's client commands are not installed here ` +
          "(tp slurm --write-only writes the scripts without submitting them)",
      );
    }
    throw e;
  }
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1);
    throw new PipelineError(`slurm: ${cmd} ${args.join(" ")} failed: ${err}`);
  }
  return text;
}

/** Submits a script; its job id. */
async function sbatch(args: string[]): Promise<string> {
  const out = await slurmCli("sbatch", ["--parsable", ...args]);
  return out.trim().split(";")[0];
}

/** Which of these job ids (array jobs by their array id) are still in Slurm's queue. */
export async function queuedJobs(ids: string[]): Promise<string[]> {
  const listed = new Set((await slurmCli("squeue", ["-h", "-o", "%F"])).split(/\s+/));
  return ids.filter((id) => listed.has(id));
}

/** The shards whose task did not finish cleanly: no status (killed) or one other than 0. */
export function unfinishedShards(dir: string, shards: number): number[] {
  const f = slurmFiles(dir);
  return [...Array(shards).keys()].filter((i) => readStatus(join(f.shard(i), "status")) !== 0);
}

function readSubmission(dir: string): Submission {
  const path = slurmFiles(dir).submission;
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    throw new PipelineError(`slurm: ${path}: no submission here to resubmit (run tp slurm first)`);
  }
}

function readLayout(dir: string): SlurmLayout {
  const path = slurmFiles(dir).layout;
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch {
    throw new PipelineError(`slurm: ${path}: no scripts written here (run tp slurm first)`);
  }
}

/** `tp slurm --merge`: the shards' stores into the store; 1 while some shard has not finished. */
async function merge(dir: string, command: string): Promise<number> {
  const l = readLayout(dir);
  const { unfinished, failed } = await mergeShards(l, command);
  if (failed.length) {
    console.error(`tp slurm: shards with failed cells: ${failed.join(", ")} (see their logs)`);
  }
  if (!unfinished.length) return 0;
  console.error(
    `tp slurm: unfinished shards: ${unfinished.join(", ")} (cancelled, preempted, out of time ` +
      `or killed); their finished cells are merged; run the rest with: ` +
      `tp slurm --resubmit --dir ${dir}`,
  );
  return 1;
}

async function refuseWhileQueued(sub: Submission | null): Promise<void> {
  const ids = Object.values(sub?.jobs ?? {}).filter((x): x is string => !!x);
  const queued = ids.length ? await queuedJobs(ids) : [];
  if (queued.length) {
    throw new PipelineError(
      `slurm: jobs ${queued.join(", ")} of the last submission in ${
        sub!.layout.dir
      } are still queued or running; wait for them (tp slurm --wait) or scancel them`,
    );
  }
}

/** Submits prepare (when `withPrepare`), the given shards and the merge; returns the job ids. */
async function submitJobs(
  l: SlurmLayout,
  shards: number[],
  withPrepare: boolean,
  override: string[],
): Promise<Submission["jobs"]> {
  const f = slurmFiles(l.dir);
  const jobs: Submission["jobs"] = {};
  const after = (kind: string, id?: string) =>
    id ? [`--dependency=${kind}:${id}`, "--kill-on-invalid-dep=yes"] : [];
  if (withPrepare) jobs.prepare = await sbatch([...override, f.prepare]);
  if (shards.length) {
    jobs.shards = await sbatch([
      ...after("afterok", jobs.prepare),
      `--array=${shards.join(",")}`,
      ...override,
      f.shards,
    ]);
  }
  jobs.merge = await sbatch([...after("afterany", jobs.shards ?? jobs.prepare), f.merge]);
  return jobs;
}

/** Waits until none of the submission's jobs is queued; the merge's status (null: it never ran). */
async function waitForMerge(sub: Submission, pollMs = 1000): Promise<number | null> {
  const ids = Object.values(sub.jobs).filter((x): x is string => !!x);
  console.log(`waiting for jobs ${ids.join(", ")}…`);
  while ((await queuedJobs(ids)).length) await new Promise((r) => setTimeout(r, pollMs));
  return readStatus(slurmFiles(sub.layout.dir).mergeStatus);
}

/** Reports how a waited-for submission ended; the exit status of `tp slurm --wait`. */
function reportEnd(sub: Submission, merge: number | null): number {
  const { dir, shards } = sub.layout;
  const left = unfinishedShards(dir, shards);
  const failed = left.filter((i) => readStatus(join(slurmFiles(dir).shard(i), "status")) === 1);
  if (merge === 0) {
    console.log(`merged ${shards} shards into ${sub.layout.store}`);
    if (!failed.length) return 0;
    console.log(
      `shards with failed cells: ${failed.join(", ")}; tp slurm --resubmit --dir ${dir} ` +
        "runs them again",
    );
    return 1;
  }
  if (left.length) {
    console.log(
      `unfinished shards: ${left.join(", ")}; their finished cells are kept: ` +
        `tp slurm --resubmit --dir ${dir} runs the rest`,
    );
  } else console.log(`the merge job ended with status ${merge ?? "none (it never ran)"}`);
  return 1;
}

function layoutFrom(values: Record<string, unknown>, storeDir: string): SlurmLayout {
  const shards = Number(values.shards);
  if (!Number.isInteger(shards) || shards < 1) {
    throw new PipelineError(`slurm: --shards: expected a positive integer, got "${values.shards}"`);
  }
  const gpus = Number(values.gpus ?? 1);
  if (!Number.isInteger(gpus) || gpus < 0) {
    throw new PipelineError(`slurm: --gpus: expected an integer >= 0, got "${values.gpus}"`);
  }
  const cpus = values["cpus-per-task"] === undefined ? undefined : Number(values["cpus-per-task"]);
  if (cpus !== undefined && (!Number.isInteger(cpus) || cpus < 1)) {
    throw new PipelineError(`slurm: --cpus-per-task: expected a positive integer`);
  }
  const abs = (p: string) => isAbsolute(p) ? p : resolve(Deno.cwd(), p);
  const dir = abs((values.dir as string | undefined) ?? join(REPO_ROOT, ".tracepipe", "slurm"));
  if (/[\s'"\\$`]/.test(dir)) {
    throw new PipelineError(
      `slurm: --dir ${dir}: #SBATCH lines cannot hold spaces or quotes in a path`,
    );
  }
  const reproduceArgs = [
    ...(values.profile ? ["--profile", abs(values.profile as string)] : []),
    ...(values.set as string[]).flatMap((s) => ["--set", s]),
    ...(values.corpus as string[]).flatMap((c) => ["--corpus", abs(c)]),
    ...(values["lock-clocks"] ? ["--lock-clocks"] : []),
  ];
  return {
    dir,
    store: storeDir,
    repo: REPO_ROOT,
    shards,
    gpusPerTask: gpus,
    cpusPerTask: cpus,
    partition: values.partition as string | undefined,
    time: values.time as string | undefined,
    sbatchArgs: values["sbatch-arg"] as string[],
    reproduceArgs,
  };
}

/** Writes the scripts of a layout into its folder, clearing the statuses of an earlier submission. */
export function writeScripts(l: SlurmLayout, stageNames: string[]): void {
  const f = slurmFiles(l.dir);
  mkdirSync(f.logs, { recursive: true });
  writeFileAtomic(f.prepare, prepareScript(l, stageNames));
  writeFileAtomic(f.shards, shardsScript(l));
  writeFileAtomic(f.merge, mergeScript(l, stageNames));
  writeFileAtomic(f.layout, JSON.stringify(l, null, 2) + "\n");
  for (const p of [f.prepareStatus, f.mergeStatus]) rmSync(p, { force: true });
  for (let i = 0; i < l.shards; i++) rmSync(join(f.shard(i), "status"), { force: true });
}

/** `tp slurm …`: returns the exit status. */
export async function slurmCommand(
  args: string[],
  storeDir: string,
  stageNames: string[],
  command = `tp slurm ${args.join(" ")}`,
): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      shards: { type: "string" },
      gpus: { type: "string" },
      "cpus-per-task": { type: "string" },
      dir: { type: "string" },
      time: { type: "string" },
      partition: { type: "string" },
      "sbatch-arg": { type: "string", multiple: true, default: [] },
      profile: { type: "string" },
      set: { type: "string", multiple: true, default: [] },
      corpus: { type: "string", multiple: true, default: [] },
      "lock-clocks": { type: "boolean", default: false },
      "write-only": { type: "boolean", default: false },
      resubmit: { type: "boolean", default: false },
      merge: { type: "boolean", default: false },
      wait: { type: "boolean", default: false },
    },
    strict: true,
  });
  const override = [
    ...(values.time ? [`--time=${values.time}`] : []),
    ...(values.partition ? [`--partition=${values.partition}`] : []),
  ];
  const dir = resolve(values.dir ?? join(REPO_ROOT, ".tracepipe", "slurm"));
  if (values.merge) return await merge(dir, command);
  if (values.resubmit) return await resubmit(readSubmission(dir), override, values.wait!);
  if (values.shards === undefined) {
    throw new PipelineError("slurm: give --shards N (or --resubmit)");
  }
  const l = layoutFrom(values, storeDir);
  const f = slurmFiles(l.dir);
  const previous = existsSync(f.submission) ? readSubmission(l.dir) : null;
  if (!values["write-only"]) await refuseWhileQueued(previous);
  writeScripts(l, stageNames);
  if (values["write-only"]) {
    console.log(`wrote ${f.prepare}, ${f.shards} and ${f.merge}; submit them with:`);
    console.log(`  p=$(sbatch --parsable ${f.prepare})`);
    console.log(`  a=$(sbatch --parsable --dependency=afterok:$p ${f.shards})`);
    console.log(`  sbatch --dependency=afterany:$a ${f.merge}`);
    return 0;
  }
  const all = [...Array(l.shards).keys()];
  const jobs = await submitJobs(l, all, true, []);
  const sub: Submission = { layout: l, jobs, submittedShards: all, history: [] };
  writeFileAtomic(f.submission, JSON.stringify(sub, null, 2) + "\n");
  console.log(
    `submitted prepare ${jobs.prepare}, shards ${jobs.shards} (array 0-${
      l.shards - 1
    }), merge ${jobs.merge}; logs in ${f.logs}`,
  );
  return values.wait ? reportEnd(sub, await waitForMerge(sub)) : 0;
}

/** Submits again the shards of `sub` that did not finish (and prepare, if it did not), then merge. */
async function resubmit(sub: Submission, override: string[], wait: boolean): Promise<number> {
  await refuseWhileQueued(sub);
  const l = sub.layout;
  const f = slurmFiles(l.dir);
  const left = unfinishedShards(l.dir, l.shards);
  const withPrepare = readStatus(f.prepareStatus) !== 0;
  if (!left.length && readStatus(f.mergeStatus) === 0) {
    console.log(`every shard finished and the merge ran: nothing to resubmit in ${l.dir}`);
    return 0;
  }
  rmSync(f.mergeStatus, { force: true });
  const jobs = await submitJobs(l, left, withPrepare, override);
  const next: Submission = {
    ...sub,
    jobs,
    submittedShards: left,
    history: [...sub.history, {
      at: new Date().toISOString(),
      jobs: sub.jobs,
      shards: sub.submittedShards,
    }],
  };
  writeFileAtomic(f.submission, JSON.stringify(next, null, 2) + "\n");
  console.log(
    `resubmitted ${withPrepare ? `prepare ${jobs.prepare}, ` : ""}${
      left.length ? `shards ${left.join(", ")} (job ${jobs.shards}), ` : ""
    }merge ${jobs.merge}`,
  );
  return wait ? reportEnd(next, await waitForMerge(next)) : 0;
}
