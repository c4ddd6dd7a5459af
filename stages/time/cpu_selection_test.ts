/**
 * Without a GPU, time plans a CPU-sized selection of the cells verify passed: at most
 * `cpu_max_workloads` workloads per definition that fit `cpu_max_cost`; the others are not runnable
 * here, saying why and how to ask for everything. On a GPU the plan and its keys are what they were.
 */
import { type CellResult, REPO_ROOT, type Toolchain } from "../../pipeline/engine/mod.ts";
import { Solution } from "../../pipeline/trace/mod.ts";
import { rmsnormPlanUpstream } from "../../pipeline/harness/testdata/upstream.ts";
import { assertEquals, assertMatch } from "../../tests/assert.ts";
import { RMSNORM_DEF as DEF, rmsnormSolution } from "../../tests/fixtures/rmsnorm.ts";
import { CPU_TOOLCHAIN, fragmentCell, GPU_TOOLCHAIN } from "../../tests/stages.ts";
import { TimeParams, timeStage } from "./stage.ts";

const SOL = "honest";
const CPU = CPU_TOOLCHAIN;
const GPU = GPU_TOOLCHAIN;

/** time's upstream: DEF, workloads of these batch sizes (uuid `b<batch>`), each passed by verify. */
function upstream(batches: number[]): Record<string, CellResult[]> {
  const { workloads, cells } = rmsnormPlanUpstream(batches, Solution.parse(rmsnormSolution(SOL)));
  return {
    ...cells,
    verify: workloads.map((w) =>
      fragmentCell(`${DEF}/${SOL}/${w.uuid}`, {}, {
        definition: DEF,
        solution: SOL,
        workload: w.uuid,
        outcome: "evaluated",
        status: "PASSED",
        reason: null,
      })
    ),
  };
}

async function plan(tc: Toolchain, batches: number[], params: Record<string, unknown> = {}) {
  const lines: string[] = [];
  const plans = await timeStage.plan({
    params: TimeParams.parse(params),
    root: REPO_ROOT,
    upstream: upstream(batches),
    toolchain: tc,
    env: {},
    log: (l) => lines.push(l),
  });
  return { plans, lines };
}

const BIG = 5_000_000; // 1.3e9 element operations, over the default budget of 1e9

Deno.test("without a GPU, time times at most cpu_max_workloads per definition that fit the budget", async () => {
  assertEquals(TimeParams.parse({}).cpu_max_workloads, 3, "as many as verify judges by default");
  const { plans, lines } = await plan(CPU, [4, BIG, 8, 16], { cpu_max_workloads: 2 });
  const timed = plans.filter((p) => !p.notRunnable).map((p) => p.id.split("/")[2]);
  assertEquals(timed, ["b4", "b8"]);
  const left = Object.fromEntries(
    plans.filter((p) => p.notRunnable).map((p) => [p.id.split("/")[2], p.notRunnable!]),
  );
  assertMatch(left[`b${BIG}`], /^CPU-sized selection: estimated cost 1\.3e9 over cpu_max_cost/);
  assertMatch(
    left.b16,
    /^CPU-sized selection: cpu_max_workloads 2 reached \(pass --set time\.cpu_selection=false to judge everything\)$/,
  );
  assertEquals(lines.length, 1);
  assertMatch(
    lines[0],
    /^no GPU here: timing a CPU-sized selection .*2 of 4 cells not runnable here/,
  );
});

Deno.test("on a GPU, or with cpu_selection false, time plans every passed cell with the usual keys", async () => {
  const gpu = await plan(GPU, [4, BIG, 8, 16]);
  assertEquals(gpu.plans.filter((p) => p.notRunnable), []);
  assertEquals(gpu.lines, []);
  const keys = Object.keys(gpu.plans[0].params as Record<string, unknown>).sort();
  assertEquals(keys.filter((k) => k.startsWith("cpu_")), [], "the CPU selection is in no key");
  assertEquals(keys, [
    "gate_hold_us",
    "host_bound_rel_stderr",
    "input_sets",
    "input_sets_max_bytes",
    "max_samples",
    "max_seconds",
    "min_samples",
    "rounds",
    "settle_workers",
    "target_rel_stderr",
    "time_reference",
    "warmup_calls",
  ]);
  const all = await plan(CPU, [4, BIG, 8, 16], { cpu_selection: false });
  assertEquals(all.plans.filter((p) => p.notRunnable), []);
  assertEquals(all.plans.map((p) => p.params), gpu.plans.map((p) => p.params));
});
