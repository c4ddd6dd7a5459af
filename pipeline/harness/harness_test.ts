/**
 * Runs the Python harness test suite (unit checks, cheaters, honest controls, timing defences) in CPU mode
 * with /usr/bin/python3 (or TRACEPIPE_PYTHON). Skipped, with the reason printed, when torch is missing.
 */
import { assert, assertEquals, assertNotEquals, assertRejects } from "../../tests/assert.ts";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { HarnessError, probeCapabilities, runGroup, runHarness, SessionPool } from "./client.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const PY = Deno.env.get("TRACEPIPE_PYTHON") ?? "/usr/bin/python3";

async function torchImportable(): Promise<string | null> {
  try {
    const r = await new Deno.Command(PY, {
      args: ["-c", "import torch"],
      stdout: "null",
      stderr: "piped",
    })
      .output();
    return r.success
      ? null
      : `${PY} cannot import torch: ${new TextDecoder().decode(r.stderr).trim()}`;
  } catch (e) {
    return `${PY} not runnable: ${e}`;
  }
}

/** A value-returning Python solution with its code in main.py. */
function pythonSolution(definition: string, name: string, code: string) {
  return {
    name,
    definition,
    author: "t",
    spec: {
      language: "python",
      target_hardware: ["cpu"],
      entry_point: "main.py::run",
      destination_passing_style: false,
    },
    sources: [{ path: "main.py", content: code }],
  };
}

const skip = await torchImportable();
if (skip) console.log(`SKIP harness tests: ${skip} (apt-get install python3-torch)`);

Deno.test({
  name: "harness: cheaters rejected, controls pass, timing defences hold (CPU mode)",
  ignore: skip !== null,
  async fn() {
    const r = await runGroup(
      PY,
      // tests/test_harness.py runs every part of the suite (test_units.py, test_judging.py).
      [join(HERE, "tests", "test_harness.py"), "--device", "cpu", "--jobs", "2"],
      {
        timeoutMs: 600_000,
        env: { PYTHONUNBUFFERED: "1" },
      },
    );
    console.log(r.stdout.split("\n").filter((l) => !l.startsWith("ok ")).join("\n"));
    assert(!r.timedOut, "python test suite timed out");
    assertEquals(
      r.code,
      0,
      `python harness tests failed:\n${r.stdout}\n${r.stderr.slice(-3000)}`,
    );
    assert(/^0 failed/m.test(r.stdout), "suite summary missing");
  },
});

Deno.test({
  name: "harness: verify through the Deno client yields FlashInfer-shaped evaluations",
  ignore: skip !== null,
  async fn() {
    const def = {
      name: "tp_relu_f32",
      op_type: "activation",
      axes: { n: { type: "var" }, d: { type: "const", value: 16 } },
      inputs: { x: { shape: ["n", "d"], dtype: "float32" } },
      outputs: { y: { shape: ["n", "d"], dtype: "float32" } },
      reference: "import torch\n\ndef run(x):\n    return torch.relu(x)\n",
    };
    const mk = (name: string, code: string) => pythonSolution(def.name, name, code);
    const workDir = Deno.makeTempDirSync();
    const res = await runHarness("verify", {
      device: "cpu",
      work_dir: workDir,
      definition: def,
      solutions: [
        mk("good", "import torch\ndef run(x):\n    return torch.relu(x)\n"),
        mk("bad", "def run(x):\n    return x * 2\n"),
      ],
      workloads: [{ uuid: "w1", axes: { n: 5 }, inputs: { x: { type: "random" } } }],
      config: { num_trials: 2 },
    }, { python: PY, timeoutMs: 120_000 });
    Deno.removeSync(workDir, { recursive: true });
    assert(res.ok, res.error ?? "");
    const by = Object.fromEntries(res.results.map((c) => [c.solution, c]));
    assertEquals(by.good.evaluation?.status, "PASSED");
    assertEquals(by.good.evaluation?.performance, null);
    assertEquals(by.bad.evaluation?.status, "INCORRECT_NUMERICAL");
    assert((by.bad.evaluation?.correctness?.max_absolute_error ?? 0) > 0);
  },
});

Deno.test({
  name: "harness probe: lists what the installed torch cannot do, for `tp doctor`",
  ignore: skip !== null,
  async fn() {
    const res = await runHarness("probe", null, { python: PY, timeoutMs: 120_000 });
    const caps = probeCapabilities(res);
    assert(caps !== null, `probe result has no capabilities: ${JSON.stringify(res.probe)}`);
    assert(caps.checked > 30, `only ${caps.checked} capabilities probed`);
    const hasRmsNorm = await new Deno.Command(PY, {
      args: ["-c", "import torch.nn.functional as F; assert hasattr(F, 'rms_norm')"],
      stdout: "null",
      stderr: "null",
    }).output();
    assertEquals(
      caps.missing.some((m) => m.capability === "torch.nn.functional.rms_norm"),
      !hasRmsNorm.success,
      "rms_norm listed as missing exactly when this torch lacks it",
    );
  },
});

/** A process group exists while any of its members does. */
function groupAlive(pgid: number): boolean {
  try {
    Deno.kill(-pgid, "SIGCONT");
    return true;
  } catch {
    return false;
  }
}

Deno.test({
  name:
    "harness sessions: jobs share one judge; a timeout kills its group; the pool starts a fresh one",
  ignore: skip !== null,
  async fn() {
    const def = {
      name: "tp_sleepy",
      op_type: "activation",
      axes: { n: { type: "var" } },
      inputs: { x: { shape: ["n"], dtype: "float32" } },
      outputs: { y: { shape: ["n"], dtype: "float32" } },
      reference: "def run(x):\n    return x.clone()\n",
    };
    const sol = (name: string, code: string) => pythonSolution(def.name, name, code);
    const workDir = Deno.makeTempDirSync();
    const job = (code: string) => ({
      device: "cpu",
      work_dir: workDir,
      definition: def,
      solutions: [sol("s", code)],
      workloads: [{ uuid: "w1", axes: { n: 8 }, inputs: { x: { type: "random" } } }],
      config: { num_trials: 1 },
    });
    const pool = new SessionPool({ python: PY });
    try {
      const pids: number[] = [];
      for (let i = 0; i < 2; i++) {
        const r = await pool.use(async (s) => {
          pids.push(s.pid);
          return await s.run("verify", job("def run(x):\n    return x.clone()\n"), {
            timeoutMs: 120_000,
          });
        });
        assertEquals(r.results[0].evaluation?.status, "PASSED");
      }
      assertEquals(pids[0], pids[1], "the second job did not reuse the judge");
      let killed = -1;
      const err = await assertRejects(
        pool.use((s) => {
          killed = s.pid;
          return s.run("verify", job("import time\ndef run(x):\n    time.sleep(300)\n"), {
            timeoutMs: 4000,
          });
        }),
        /exceeded 4000 ms/,
      );
      assert(err instanceof HarnessError, "a timeout is a HarnessError");
      assertEquals(killed, pids[0]);
      for (let i = 0; i < 50 && groupAlive(killed); i++) {
        await new Promise((res) => setTimeout(res, 100));
      }
      assert(!groupAlive(killed), "the timed-out judge's process group survived");
      const after = await pool.use(async (s) => {
        const r = await s.run("verify", job("def run(x):\n    return x.clone()\n"));
        return { pid: s.pid, status: r.results[0].evaluation?.status };
      });
      assertNotEquals(after.pid, killed);
      assertEquals(after.status, "PASSED");
    } finally {
      await pool.close();
      Deno.removeSync(workDir, { recursive: true });
    }
  },
});
