import { assertEquals } from "../tests/assert.ts";
import { loadStages, STAGES } from "./mod.ts";

Deno.test("the registry's order and upstream lists match the stage modules", async () => {
  const stages = await loadStages("all");
  for (const [i, s] of stages.entries()) {
    assertEquals(s.name, STAGES[i].name);
    assertEquals(s.upstream, STAGES[i].upstream, s.name);
    for (const u of s.upstream) {
      const at = STAGES.findIndex((e) => e.name === u);
      assertEquals(at >= 0 && at < i, true, `${s.name}: upstream ${u} must come before it`);
    }
  }
});
