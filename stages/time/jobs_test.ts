import { assertEquals } from "../../tests/assert.ts";
import type { CellJob } from "../../pipeline/engine/mod.ts";
import { byWorkloads } from "./stage.ts";

/** A time cell of `solution` on workload `uuid` (only what the split reads). */
const cell = (solution: string, uuid: string) =>
  ({
    plan: { payload: { solution: { name: solution }, workload: { workload: { uuid } } } },
  }) as unknown as CellJob;

const names = (jobs: CellJob[][]) =>
  jobs.map((j) =>
    j.map((c) => {
      const p = c.plan.payload as {
        solution: { name: string };
        workload: { workload: { uuid: string } };
      };
      return `${p.solution.name}@${p.workload.workload.uuid}`;
    })
  );

Deno.test("time jobs hold at most workloads_per_job workloads, each workload's solutions together", () => {
  const group = [
    cell("a", "w1"),
    cell("b", "w1"),
    cell("a", "w2"),
    cell("a", "w3"),
    cell("b", "w2"),
    cell("b", "w3"),
    cell("c", "w1"),
  ];
  assertEquals(names(byWorkloads(group, 2)), [
    ["a@w1", "b@w1", "c@w1", "a@w2", "b@w2"],
    ["a@w3", "b@w3"],
  ]);
  // A split as large as the definition's workloads is one job, in the cells' order by workload.
  assertEquals(byWorkloads(group, 3).length, 1);
  assertEquals(names(byWorkloads(group, 1)).map((j) => j.length), [3, 2, 2]);
  assertEquals(byWorkloads([], 4), []);
});
