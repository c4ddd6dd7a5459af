/**
 * compile → verify → time through the engine in CPU mode, on real PyTorch: an honest Python
 * solution passes and is timed, a wrong one and a cheating one get their statuses as FlashInfer
 * traces, and a CUDA solution is listed as not runnable here (no trace blames it). Also how the
 * judging stages share their serving harnesses.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  discoverToolchain,
  REPO_ROOT,
  runPipeline,
  Store,
  type Toolchain,
} from "../pipeline/engine/mod.ts";
import { FAKE_GPU, FAKE_TOOLCHAIN } from "../pipeline/engine/testdata/engine_stages.ts";
import { mergeFragments, Solution, type Trace, workloadsPath } from "../pipeline/trace/mod.ts";
import { assert, assertEquals, assertMatch } from "./assert.ts";
import {
  HONEST_RMSNORM as HONEST,
  RMSNORM_DEF as DEF,
  RMSNORM_DEF_PATH,
  rmsnormDefinitionText,
  rmsnormUpstream,
  rmsnormWorkloadsJsonl,
} from "./fixtures/rmsnorm.ts";
import { registered } from "./stages.ts";
import { compileStage } from "../stages/compile/mod.ts";
import { timeStage } from "../stages/time/mod.ts";
import {
  closeSharedSessions,
  dependencyName,
  idleSharedSessions,
  mapWithSessions,
  mergeUpstream,
  notRunnableHere,
  prestartSharedSessions,
} from "../pipeline/harness/mod.ts";
import { verifyStage, workloadsFor } from "../stages/verify/mod.ts";

const tc = await discoverToolchain();
const skip = !tc.python?.torch;
if (skip) {
  console.log(
    "skipping the judging end-to-end test: no Python with torch (apt-get install python3-torch)",
  );
}

const sol = (name: string, body: string, language = "python") =>
  Solution.parse({
    name,
    definition: DEF,
    author: name.startsWith("torch") ? "baseline" : "tester",
    spec: {
      language,
      target_hardware: ["cpu", "cuda"],
      entry_point: language === "cuda" ? "k.cu::run" : "main.py::run",
      binding: language === "cuda" ? "torch" : null,
      destination_passing_style: true,
    },
    sources: [{ path: language === "cuda" ? "k.cu" : "main.py", content: body }],
  });

const SOLUTIONS = [
  sol("honest", HONEST),
  sol("torch_rmsnorm_baseline", HONEST),
  sol("wrong", "def run(hidden_states, weight, output):\n    output.copy_(hidden_states * 2)\n"),
  sol("cheat_modifies_input", `${HONEST}    hidden_states.zero_()\n`),
  sol("cuda_kernel", "// never built on a CPU machine\nvoid run() {}\n", "cuda"),
];

Deno.test({
  name:
    "judging in CPU mode: pass and time, wrong and cheating solutions fail, CUDA not runnable here",
  ignore: skip,
  async fn() {
    const workloads = [16, 3].map((n, i) => ({
      axes: { batch_size: n },
      inputs: {},
      uuid: `wl-${i}`,
    }));
    const stages = [
      ...rmsnormUpstream(workloads, SOLUTIONS),
      registered(compileStage),
      registered(verifyStage),
      registered(timeStage),
    ];
    const store = new Store(mkdtempSync(join(tmpdir(), "tp-judge-")));
    const { reports } = await runPipeline({
      root: REPO_ROOT,
      store,
      stages,
      rawParams: {
        verify: { num_trials: 2 },
        time: {
          rounds: 1,
          min_samples: 5,
          max_samples: 20,
          max_seconds: 0.5,
          input_sets: 2,
          baseline_prefer: "torch",
        },
      },
      toolchain: tc,
      log: () => {},
    }).finally(closeSharedSessions);
    const byStage = Object.fromEntries(reports.map((r) => [r.stage, r]));
    for (const s of ["compile", "verify", "time"]) assertEquals(byStage[s].failed, [], s);
    // nvcc still compiles the CUDA source here, as a check; judging it needs a GPU.
    assert(
      byStage.verify.notRunnable.some((n) =>
        n.id.includes("/cuda_kernel/") && /need a GPU/.test(n.reason)
      ),
      "CUDA listed as not runnable here",
    );

    const traces: Trace[] = mergeFragments(
      ["definitions", "generate", "verify", "time"].flatMap((st) => store.lastResults(st)!),
    ).traces;
    const status = (
      name: string,
    ) => [...new Set(traces.filter((t) => t.solution === name).map((t) => t.evaluation!.status))];
    assertEquals(
      status("honest"),
      ["PASSED"],
      JSON.stringify(traces.filter((t) => t.solution === "honest").map((t) => t.evaluation!.log))
        .slice(0, 3000),
    );
    assertEquals(status("wrong"), ["INCORRECT_NUMERICAL"]);
    assertEquals(status("cheat_modifies_input"), ["RUNTIME_ERROR"]);
    assertEquals(status("cuda_kernel"), [], "no trace blames a solution that could not run here");
    const passed = traces.filter((t) => t.solution === "honest");
    assertEquals(passed.length, 2);
    for (const t of passed) {
      const p = t.evaluation!.performance!;
      assert(p.latency_ms > 0 && p.reference_latency_ms > 0, JSON.stringify(p));
      assertEquals(
        Math.abs(p.speedup_factor - p.reference_latency_ms / p.latency_ms) <
          1e-6 * p.speedup_factor,
        true,
      );
    }
    const timing = JSON.parse(
      readFileSync(join(store.lastResults("time")![0].dir, "timing.json"), "utf8"),
    );
    assert(
      Array.isArray(timing.details.candidate.samples_ms) &&
        timing.details.candidate.samples_ms.length >= 5,
    );
  },
});

Deno.test("a solution needing flashinfer is not runnable without it, however it says so", () => {
  const withDeps = (dependencies: string[], body = HONEST) => {
    const s = sol("s", body);
    return Solution.parse({ ...s, spec: { ...s.spec, dependencies } });
  };
  const python = { path: "python3", version: "3", torch: "2" };
  const gpu: Toolchain = { ...FAKE_TOOLCHAIN, python, gpus: [FAKE_GPU] };
  const reason = /toolchain unavailable: the flashinfer package is not installed here/;
  for (const deps of [["flashinfer"], ["flashinfer >= 0.2.8"], ["FlashInfer_Python==0.3"]]) {
    assertMatch(notRunnableHere(withDeps(deps), gpu, "verify") ?? "", reason, deps[0]);
  }
  // Imported without being declared.
  const imports = withDeps([], `import torch\nfrom flashinfer.norm import rmsnorm\n${HONEST}`);
  assertMatch(notRunnableHere(imports, gpu, "compile") ?? "", reason);
  // Installed: runnable. Unrelated names and mentions do not count.
  const installed: Toolchain = { ...gpu, python: { ...gpu.python!, flashinfer: "0.2.8" } };
  assertEquals(notRunnableHere(withDeps(["flashinfer>=0.2.8"]), installed, "time"), null);
  assertEquals(notRunnableHere(withDeps(["flashinfer_bench", "torch"]), gpu, "verify"), null);
  assertEquals(
    notRunnableHere(withDeps([], `# unlike flashinfer\n${HONEST}`), gpu, "verify"),
    null,
  );
  assertEquals(dependencyName("Triton[all] ~= 3.6"), "triton");
});

/** A fragment holding workloads of DEF (rmsnorm_h128) with the given axes, inputs random (none if bare). */
function workloadFragment(
  workloads: Array<{ uuid: string; axes: Record<string, number>; bare?: boolean }>,
) {
  const dir = mkdtempSync(join(tmpdir(), "tp-frag-"));
  const rel = workloadsPath("rmsnorm", DEF);
  mkdirSync(join(dir, rel, ".."), { recursive: true });
  const random = { type: "random" as const };
  const all: Record<string, typeof random> = { hidden_states: random, weight: random };
  writeFileSync(
    join(dir, rel),
    rmsnormWorkloadsJsonl(
      workloads.map(({ uuid, axes, bare }) => ({ axes, inputs: bare ? {} : all, uuid })),
    ),
  );
  return dir;
}

function definitionsCell() {
  const defDir = mkdtempSync(join(tmpdir(), "tp-frag-"));
  mkdirSync(join(defDir, "definitions/rmsnorm"), { recursive: true });
  writeFileSync(join(defDir, RMSNORM_DEF_PATH), rmsnormDefinitionText());
  return fragmentCell("definitions", defDir);
}

const fragmentCell = (id: string, dir: string) => ({ id, key: id, digest: id, dir, summary: null });

Deno.test("the workloads judged do not depend on the order of the upstream run index", () => {
  const defs = [definitionsCell()];
  const a = fragmentCell(
    "extract/a",
    workloadFragment([{ uuid: "wl-a", axes: { batch_size: 4 } }]),
  );
  const b = fragmentCell(
    "extract/b",
    workloadFragment([{ uuid: "wl-b", axes: { batch_size: 4 } }]),
  );
  const first = (extract: ReturnType<typeof fragmentCell>[]) =>
    workloadsFor(mergeUpstream({ definitions: defs, extract }, ["definitions", "extract"]), DEF, 1)
      .map((w) => w.workload.uuid);
  assertEquals(first([a, b]), ["wl-a"]);
  assertEquals(first([b, a]), ["wl-a"]);
});

Deno.test("a workload that breaks its definition is skipped and named, not judged", () => {
  const extract = [
    fragmentCell(
      "extract/a",
      workloadFragment([
        { uuid: "wl-bad-axis", axes: { hidden_size: 4 } },
        // Inputs left out are drawn at random, as flashinfer-bench does: not a reason to skip.
        { uuid: "wl-good-1", axes: { batch_size: 2 }, bare: true },
        { uuid: "wl-good-2", axes: { batch_size: 3 } },
        { uuid: "wl-good-3", axes: { batch_size: 5 } },
      ]),
    ),
  ];
  const merged = mergeUpstream({ definitions: [definitionsCell()], extract }, [
    "definitions",
    "extract",
  ]);
  const skipped: string[] = [];
  const chosen = workloadsFor(merged, DEF, 2, skipped).map((w) => w.workload.uuid);
  assertEquals(chosen, ["wl-good-1", "wl-good-2"], "the next valid workloads take its place");
  assertEquals(skipped.length, 1);
  assertMatch(skipped[0], /^rmsnorm_h128 wl-bad-axis: .*batch_size/);
});

Deno.test({
  name:
    "shared sessions: judges prestarted for verify stay idle through a stage before it, verify closes the extra ones, and a timing stage runs with no other judge idle",
  ignore: skip,
  async fn() {
    try {
      await prestartSharedSessions(3);
      assertEquals(idleSharedSessions(), 3);
      await mapWithSessions([1, 2], 2, async () => {}); // a compile stage before verify
      assertEquals(
        idleSharedSessions(),
        3,
        "a stage before verify closed the judges started for it",
      );
      await mapWithSessions([1, 2, 3], 3, async () => {}, { claimsPrestarted: true });
      assertEquals(idleSharedSessions(), 1, "verify kept its extra judges after it");
      await prestartSharedSessions(3); // verify's cells all cached: its judges are still idle at time
      let idleBeside = -1;
      await mapWithSessions([1], 1, () => {
        idleBeside = idleSharedSessions();
        return Promise.resolve();
      }, { alone: true });
      assertEquals(idleBeside, 0, "the timing stage ran beside idle judges");
      assertEquals(idleSharedSessions(), 1);
    } finally {
      await closeSharedSessions();
    }
  },
});
