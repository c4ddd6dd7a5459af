/**
 * Without a GPU, verify plans a CPU-sized selection: at most `cpu_max_workloads` workloads per
 * definition that fit `cpu_max_cost`, a costly workload giving its place to the next one; the usual
 * workloads it leaves out are not runnable here, saying why and how to ask for everything. On a GPU,
 * or with `cpu_selection` false, the plan is what it always was, keys included.
 */
import {
  type CellPlan,
  type CellResult,
  REPO_ROOT,
  type Toolchain,
} from "../../pipeline/engine/mod.ts";
import { Solution } from "../../pipeline/trace/mod.ts";
import { rmsnormPlanUpstream } from "../../pipeline/harness/testdata/upstream.ts";
import { assertEquals, assertMatch } from "../../tests/assert.ts";
import { RMSNORM_DEF as DEF, rmsnormSolution } from "../../tests/fixtures/rmsnorm.ts";
import { CPU_TOOLCHAIN, fragmentCell, GPU_TOOLCHAIN } from "../../tests/stages.ts";
import { VerifyParams, verifyStage } from "./stage.ts";

const SOL = "torch_rmsnorm";
const CPU = CPU_TOOLCHAIN;
const GPU = GPU_TOOLCHAIN;

/**
 * The upstream of the judging stages: DEF, workloads of these batch sizes (uuid `b<batch>`) and one
 * Python solution, `SOL`, built.
 */
function rmsnormCells(batches: number[], sol = SOL): Record<string, CellResult[]> {
  const solution = Solution.parse(rmsnormSolution(sol, undefined, "baseline"));
  return {
    ...rmsnormPlanUpstream(batches, solution).cells,
    compile: [fragmentCell(`${DEF}/${sol}`, {}, {
      solution: sol,
      definition: DEF,
      outcome: "built",
      reason: null,
    })],
  };
}

/** verify's plan on this toolchain with these params; the lines it logged. */
async function plan(
  tc: Toolchain,
  batches: number[],
  params: Record<string, unknown> = {},
): Promise<{ plans: CellPlan[]; lines: string[] }> {
  const lines: string[] = [];
  const plans = await verifyStage.plan({
    params: VerifyParams.parse({ max_workloads: 3, ...params }),
    root: REPO_ROOT,
    upstream: rmsnormCells(batches),
    toolchain: tc,
    env: {},
    log: (l) => lines.push(l),
  });
  return { plans, lines };
}

const judged = (plans: CellPlan[]) =>
  plans.filter((p) => !p.notRunnable).map((p) => p.id.split("/")[2]);
const leftOut = (plans: CellPlan[]) =>
  Object.fromEntries(
    plans.filter((p) => p.notRunnable).map((p) => [p.id.split("/")[2], p.notRunnable]),
  );

// 5 000 000 rows of 128: 1.3e9 element operations, over the default budget of 1e9.
const BIG = 5_000_000;

Deno.test("without a GPU, a costly workload is not runnable here and the next one that fits takes its place", async () => {
  const { plans, lines } = await plan(CPU, [4, BIG, 8, 16, 32]);
  assertEquals(judged(plans), ["b4", "b8", "b16"]);
  assertEquals(Object.keys(leftOut(plans)), [`b${BIG}`]);
  assertMatch(
    leftOut(plans)[`b${BIG}`]!,
    /^CPU-sized selection: estimated cost 1\.3e9 over cpu_max_cost 1\.0e9 \(pass --set verify\.cpu_selection=false to judge everything\)$/,
  );
  assertEquals(lines.length, 1);
  assertMatch(
    lines[0],
    /^no GPU here: judging a CPU-sized selection \(at most 3 workloads per definition, .*1 cells of 1 definitions not runnable here for it; pass --set verify\.cpu_selection=false/,
  );
});

Deno.test("without a GPU, at most cpu_max_workloads per definition, and a definition left with none is named", async () => {
  const { plans } = await plan(CPU, [4, 8, 16], { cpu_max_workloads: 1 });
  assertEquals(judged(plans), ["b4"]);
  assertMatch(leftOut(plans).b8!, /^CPU-sized selection: cpu_max_workloads 1 reached \(pass --set/);
  const none = await plan(CPU, [BIG, BIG + 1]);
  assertEquals(judged(none.plans), []);
  assertMatch(none.lines[0], /1 definitions with no workload in it \(rmsnorm_h128\)/);
});

Deno.test("on a GPU, or with cpu_selection false, verify plans the usual workloads with the usual keys", async () => {
  const gpu = await plan(GPU, [4, BIG, 8, 16]);
  assertEquals(judged(gpu.plans), ["b4", `b${BIG}`, "b8"]);
  assertEquals(gpu.lines, [], "nothing said of a CPU selection on a GPU");
  for (const p of gpu.plans) {
    assertEquals(p.params, { num_trials: 3, rtol: 1e-2, atol: 1e-2, timeout_s: 300 });
  }
  const all = await plan(CPU, [4, BIG, 8, 16], { cpu_selection: false });
  assertEquals(judged(all.plans), ["b4", `b${BIG}`, "b8"]);
  assertEquals(all.plans.map((p) => p.params), gpu.plans.map((p) => p.params));
  assertEquals(all.lines, ["no GPU here: judging every selected workload"]);
});
