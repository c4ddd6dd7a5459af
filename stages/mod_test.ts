import { assert, assertEquals } from "../tests/assert.ts";
import { loadStages, STAGES } from "./mod.ts";

Deno.test("the registry lists stages in an order where every upstream comes first", async () => {
  const stages = await loadStages("all");
  for (const [i, s] of stages.entries()) {
    assertEquals(s.name, STAGES[i].name);
    assertEquals(s.upstream, STAGES[i].upstream, s.name);
    for (const u of s.upstream) {
      const at = STAGES.findIndex((e) => e.name === u);
      assert(at >= 0 && at < i, `${s.name}: upstream ${u} must come before it`);
    }
  }
});

Deno.test("no stage module declares its upstream: the registry is the only DAG", async () => {
  for (const e of STAGES) {
    const stage = await e.load();
    assert(!("upstream" in stage), `${e.name} declares upstream beside the registry`);
  }
});
