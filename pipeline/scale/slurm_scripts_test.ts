import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import { runCli } from "../../tests/cli.ts";
import { STAGE_NAMES } from "../../stages/mod.ts";
import {
  mergeScript,
  prepareScript,
  shardsScript,
  shellQuote,
  type SlurmLayout,
  stagesAround,
} from "./mod.ts";

const layout = (over: Partial<SlurmLayout> = {}): SlurmLayout => ({
  dir: "/shared/tp/slurm",
  store: "/shared/tp/store",
  repo: "/shared/tracepipe",
  shards: 4,
  gpusPerTask: 2,
  sbatchArgs: [],
  reproduceArgs: ["--profile", "/shared/p.json", "--set", "time.max_seconds=1 2"],
  ...over,
});

const sbatchLines = (script: string) => script.split("\n").filter((l) => l.startsWith("#SBATCH"));

Deno.test("the shards script: an array of N tasks, K GPUs each, each its own store and shard", () => {
  const s = shardsScript(layout({ cpusPerTask: 16, time: "02:00:00", partition: "h100" }));
  assertEquals(sbatchLines(s), [
    "#SBATCH --job-name=tp-shards",
    "#SBATCH --output=/shared/tp/slurm/logs/shard-%a-%A.out",
    "#SBATCH --partition=h100",
    "#SBATCH --array=0-3",
    "#SBATCH --gres=gpu:2",
    "#SBATCH --cpus-per-task=16",
    "#SBATCH --time=02:00:00",
  ]);
  assertMatch(
    s,
    /\ntp reproduce --shard "\$i\/4" --store "\$shard\/store" --profile \/shared\/p\.json --set 'time\.max_seconds=1 2'\n/,
  );
  assertMatch(s, /tp import \/shared\/tp\/slurm\/base --store "\$shard\/store"/);
  assertMatch(s, /echo "\$rc" > "\$shard\/status"/);
  // A CPU profile asks for no GPU at all.
  assert(!shardsScript(layout({ gpusPerTask: 0 })).includes("--gres"));
});

Deno.test("prepare runs the stages before the judging ones, merge the ones after, on every shard", () => {
  assertEquals(stagesAround(STAGE_NAMES), { before: "generate", after: "apply" });
  const p = prepareScript(layout({ sbatchArgs: ["--account=proj"] }), STAGE_NAMES);
  assert(sbatchLines(p).includes("#SBATCH --account=proj"));
  assertMatch(p, /\ntp reproduce --to generate --store \/shared\/tp\/slurm\/base --profile /);
  const m = mergeScript(layout(), STAGE_NAMES);
  assert(!m.includes("--gres"), "the merge needs no GPU");
  assertMatch(
    m,
    /\ntp slurm --merge --dir \/shared\/tp\/slurm\nrc=\$\?\nif \[ "\$rc" = 0 \]; then\n/,
  );
  assertMatch(m, /\n {2}tp reproduce --from apply --store \/shared\/tp\/store --wait --profile /);
});

Deno.test("the scripts are valid bash, whatever the quoting of their arguments", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-sbatch-"));
  const l = layout({ repo: "/a repo/it's here", reproduceArgs: ["--set", `x.y="q" 'r' $HOME`] });
  for (
    const [name, text] of Object.entries({
      prepare: prepareScript(l, STAGE_NAMES),
      shards: shardsScript(l),
      merge: mergeScript(l, STAGE_NAMES),
    })
  ) {
    writeFileSync(join(dir, name), text);
    const out = await new Deno.Command("bash", { args: ["-n", join(dir, name)], stderr: "piped" })
      .output();
    assert(out.success, `${name}: ${new TextDecoder().decode(out.stderr)}`);
  }
  // The arguments reach tracepipe as they were given.
  const line = prepareScript(l, STAGE_NAMES).split("\n").find((x) => x.startsWith("tp reproduce"))!;
  const out = await new Deno.Command("bash", {
    args: ["-c", `tp() { printf '%s\\n' "$@"; }; ${line}`],
    stdout: "piped",
  }).output();
  assertEquals(new TextDecoder().decode(out.stdout).split("\n").slice(-3), [
    "--set",
    `x.y="q" 'r' $HOME`,
    "",
  ]);
  assertEquals(shellQuote("it's"), `'it'\\''s'`);
  assertEquals(shellQuote("/plain/path-1.json"), "/plain/path-1.json");
});

Deno.test("tp slurm --write-only writes the scripts and says how to submit them", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-slurm-w-"));
  const r = await runCli(["slurm", "--shards", "3", "--gpus", "1", "--dir", dir, "--write-only"]);
  assertEquals(r.code, 0, r.text);
  assertMatch(r.text, /sbatch --parsable --dependency=afterok:\$p .*shards\.sbatch/);
  assert(readFileSync(join(dir, "shards.sbatch"), "utf8").includes("#SBATCH --array=0-2"));
});

Deno.test("tp slurm: bad options and a missing sbatch are one line each, exit 2", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-slurm-e-"));
  const cases: Array<[string[], RegExp]> = [
    [["--gpus", "1"], /^error: slurm: give --shards N \(or --resubmit\)$/],
    [["--shards", "0"], /^error: slurm: --shards: expected a positive integer, got "0"$/],
    [["--shards", "2", "--gpus", "x"], /^error: slurm: --gpus: expected an integer >= 0/],
    [["--shards", "2", "--dir", "/tmp/a b"], /^error: slurm: --dir \/tmp\/a b: #SBATCH lines/],
    [["--resubmit", "--dir", dir], /^error: slurm: .*submission\.json: no submission here/],
    [["--shards", "2", "--dir", dir], /^error: slurm: sbatch not found: Slurm's client commands/],
  ];
  // An empty PATH: no Slurm commands, whatever this machine has.
  const env = { PATH: mkdtempSync(join(tmpdir(), "tp-empty-path-")) };
  for (const [args, re] of cases) {
    const r = await runCli(["slurm", ...args], { env });
    assertEquals(r.code, 2, `${args.join(" ")}: ${r.text}`);
    assertEquals(r.text.trim().split("\n").length, 1, r.text);
    assertMatch(r.text.trim(), re);
  }
});
