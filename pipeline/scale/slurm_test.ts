/**
 * `tp slurm` on a real Slurm (CI starts a one-node cluster with tools/slurm/start.sh): a CPU
 * profile as a 3-task array whose merged store equals an unsharded run cell for cell, and a task
 * cancelled mid-run whose resubmission runs only its unfinished cells. Skipped, saying why, where
 * sbatch is absent, no Slurm controller answers, the cluster has nodes beyond this machine (they
 * would not see the tests' temporary folders) or no Python has torch.
 *
 * The jobs run a copy of the repository: the merge job runs aggregate, which publishes into its
 * checkout's reports/, and the repository's own reports/ must not change under a test.
 */
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import { runCli } from "../../tests/cli.ts";
import { discoverToolchain, REPO_ROOT, Store } from "../engine/mod.ts";
import { STAGE_NAMES } from "../../stages/mod.ts";
import { JUDGING_STAGES, queuedJobs, shardOf, type Submission } from "./mod.ts";
import { compareStores } from "./testdata/compare.ts";

/** Runs a command; null when it is not installed. */
async function probe(cmd: string, args: string[]) {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
    return { ok: out.success, out: text(out.stdout), err: text(out.stderr) };
  } catch {
    return null;
  }
}

/** Why the Slurm tests cannot run here, or null. */
async function slurmMissing(): Promise<string | null> {
  const path = (Deno.env.get("PATH") ?? "").split(":");
  if (!path.some((d) => d && existsSync(join(d, "sbatch")))) {
    return "no Slurm here (sbatch not found; CI installs slurm-wlm and runs tools/slurm/start.sh)";
  }
  // Without a configuration, Slurm's commands retry for a minute before giving up.
  const conf = Deno.env.get("SLURM_CONF") ?? "/etc/slurm/slurm.conf";
  if (!existsSync(conf)) return `no Slurm configuration here (${conf})`;
  const sinfo = await probe("sinfo", ["-h", "-o", "%n %T"]);
  if (!sinfo?.ok) return `no Slurm controller answers (sinfo: ${sinfo?.err})`;
  const nodes = sinfo.out.split("\n").map((l) => l.split(" "));
  if (!nodes.some(([, state]) => /^(idle|mixed|allocated)/.test(state ?? ""))) {
    return `no Slurm node takes jobs (sinfo: ${sinfo.out || "no nodes"})`;
  }
  // The jobs share the test's temporary folders: only nodes on this machine see them.
  const away = nodes.map(([host]) => host).filter((h) => h !== "localhost" && h !== hostname());
  if (away.length) return `this Slurm has nodes other than this machine (${away.join(", ")})`;
  const tc = await discoverToolchain();
  return tc.python?.torch ? null : "no Python with torch (apt-get install python3-torch)";
}

const missing = await slurmMissing();
if (missing) console.log(`skipping the Slurm tests: ${missing}`);

const JUDGED_UP_TO = STAGE_NAMES.slice(0, STAGE_NAMES.indexOf("time") + 1);

/** A copy of the repository the jobs run (node_modules linked, not copied). */
function copyRepo(): string {
  const dir = mkdtempSync(join(tmpdir(), "tp-slurm-repo-"));
  const skip = new Set([".git", ".tracepipe", "node_modules", "reports", "docs", "scratch"]);
  for (const e of readdirSync(REPO_ROOT)) {
    if (!skip.has(e)) cpSync(join(REPO_ROOT, e), join(dir, e), { recursive: true });
  }
  symlinkSync(join(REPO_ROOT, "node_modules"), join(dir, "node_modules"));
  return dir;
}

/** `tp` of the repository copy, run there with its own Deno wrapper, as the jobs run it. */
const tp = (repo: string, ...args: string[]) =>
  runCli(args, { repo, deno: join(repo, "tools", "deno"), cwd: repo });

/** Whether a test failed (its folders are kept for a look). */
let failed = false;
/** Runs a test's body, removing its folder when it passes. */
async function keepOnFailure(dir: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    failed = true;
    console.log(`kept ${dir} for a look`);
    throw e;
  }
  rmSync(dir, { recursive: true, force: true });
}

/** The repository copy, its profile and one unsharded run of it, made once for both tests. */
let setup: Promise<{ repo: string; profile: string; whole: Store }> | null = null;
function unsharded() {
  return setup ??= (async () => {
    const repo = copyRepo();
    const profile = join(repo, "pipeline/scale/testdata/cpu-slurm.json");
    const whole = new Store(mkdtempSync(join(tmpdir(), "tp-slurm-whole-")));
    // Left behind only by a failing test (a test that passes removes its own folder).
    addEventListener("unload", () => {
      if (!failed) {
        for (const d of [repo, whole.root]) rmSync(d, { recursive: true, force: true });
      }
    });
    const r = await tp(
      repo,
      "reproduce",
      "--to",
      "time",
      "--profile",
      profile,
      "--store",
      whole.root,
    );
    assertEquals(r.code, 0, r.text);
    return { repo, profile, whole };
  })();
}

const logsOf = (dir: string, prefix: string) =>
  readdirSync(join(dir, "logs")).filter((f) => f.startsWith(prefix)).sort();

/** `tp slurm` of the CPU profile in 3 shards, into `dir`, with `more` options. */
async function submit(dir: string, ...more: string[]) {
  const { repo, profile } = await unsharded();
  const args = ["--shards", "3", "--gpus", "0", "--dir", dir, "--profile", profile];
  return await tp(repo, "slurm", ...args, "--store", join(dir, "store"), ...more);
}

async function threeTasks(dir: string): Promise<void> {
  const { repo, whole } = await unsharded();
  const r = await submit(dir, "--wait");
  const logs = logsOf(dir, "").map((f) =>
    `--- ${f}\n${readFileSync(join(dir, "logs", f), "utf8")}`
  );
  assertEquals(r.code, 0, `${r.text}\n${logs.join("\n").slice(-6000)}`);
  assertMatch(r.text, /merged 3 shards into /);
  for (let i = 0; i < 3; i++) {
    const log = readFileSync(join(dir, "logs", logsOf(dir, `shard-${i}-`)[0]), "utf8");
    assertMatch(log, new RegExp(`\\[verify\\] shard ${i}/3: `));
  }
  const store = new Store(join(dir, "store"));
  assertEquals(compareStores(store, whole, JUDGED_UP_TO, JUDGING_STAGES), []);
  // The merge job ran the stages after the judging ones on every shard's cells.
  assertEquals(store.readRun("aggregate")!.cells.length, 1);
  assert(existsSync(join(repo, "reports", "index.html")), "the report was published");
}

async function cancelAndResubmit(dir: string): Promise<void> {
  const { repo, whole } = await unsharded();
  const r = await submit(dir);
  assertEquals(r.code, 0, r.text);
  const sub: Submission = JSON.parse(readFileSync(join(dir, "submission.json"), "utf8"));
  // The shard judging the slow solution, cancelled once it has finished some verify cells.
  const t = shardOf("rmsnorm_h128/slow_wrong", 3);
  const shard = join(dir, "shards", String(t));
  const verifyCells = () => {
    const d = join(shard, "store", "cells", "verify");
    return existsSync(d)
      ? readdirSync(d).filter((k) => existsSync(join(d, k, "cell.json"))).length
      : 0;
  };
  const t0 = Date.now();
  while (verifyCells() === 0) {
    assert(Date.now() - t0 < 120_000, "the shard never finished a verify cell");
    assert(!existsSync(join(shard, "status")), "the shard ended before it could be cancelled");
    await new Promise((res) => setTimeout(res, 100));
  }
  const scancel = await new Deno.Command("scancel", { args: [`${sub.jobs.shards}_${t}`] })
    .output();
  assert(scancel.success, "scancel failed");
  while ((await queuedJobs(Object.values(sub.jobs) as string[])).length) {
    await new Promise((res) => setTimeout(res, 500));
  }
  const [firstLog] = logsOf(dir, `shard-${t}-`);
  const first = readFileSync(join(dir, "logs", firstLog), "utf8");
  assertMatch(first, /interrupted: \d+ cells were left unfinished/, first);
  // The task's shell recorded tracepipe's clean stop on Slurm's SIGTERM (143), not a kill.
  assertEquals(readFileSync(join(shard, "status"), "utf8").trim(), "143");
  const kept = verifyCells();
  // What the unsharded run judged in that shard: more than the cancelled task finished.
  const planned = whole.readRun("verify")!.cells.filter((c) => shardOf(c.id, 3) === t).length;
  assert(kept >= 1 && kept < planned, `kept ${kept} of ${planned}`);
  assertEquals(readFileSync(join(dir, "merge.status"), "utf8").trim(), "1");
  assertMatch(
    readFileSync(join(dir, "logs", logsOf(dir, "merge-")[0]), "utf8"),
    new RegExp(`unfinished shards: ${t} \\(cancelled`),
  );

  const again = await tp(repo, "slurm", "--resubmit", "--dir", dir, "--wait");
  assertEquals(again.code, 0, again.text);
  assertMatch(again.text, new RegExp(`resubmitted shards ${t} \\(job \\d+\\), merge \\d+`));
  // Only the cancelled task ran again, and only its unfinished cells.
  for (let i = 0; i < 3; i++) assertEquals(logsOf(dir, `shard-${i}-`).length, i === t ? 2 : 1);
  const secondLog = logsOf(dir, `shard-${t}-`).find((f) => f !== firstLog)!;
  const second = readFileSync(join(dir, "logs", secondLog), "utf8");
  const rest = `${planned} cells: ${kept} cached, ${planned - kept} to run`;
  assertMatch(second, new RegExp(`\\[verify\\] ${rest}`));
  assertMatch(second, /\[compile\] (\d+) cells: \1 cached, 0 to run/);
  assertEquals(
    compareStores(new Store(join(dir, "store")), whole, JUDGED_UP_TO, JUDGING_STAGES),
    [],
  );
}

Deno.test({
  name: "tp slurm: a CPU profile as a 3-task array; the merged store equals an unsharded run",
  ignore: missing !== null,
  async fn() {
    const dir = mkdtempSync(join(tmpdir(), "tp-slurm-"));
    await keepOnFailure(dir, () => threeTasks(dir));
  },
});

Deno.test({
  name:
    "tp slurm: a task cancelled mid-run keeps its finished cells; --resubmit runs only the rest",
  ignore: missing !== null,
  async fn() {
    const dir = mkdtempSync(join(tmpdir(), "tp-slurm-"));
    await keepOnFailure(dir, () => cancelAndResubmit(dir));
  },
});
