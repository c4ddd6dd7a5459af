import { assert, assertEquals, assertMatch, assertNotEquals } from "../../tests/assert.ts";
import {
  deriveWorkloadUuid,
  rewriteDictReturns,
  upgradeDefinition,
  upgradeSolution,
  upgradeTraceLine,
  uuidv5,
} from "./legacy.ts";

Deno.test("uuidv5 matches the RFC 4122 construction", () => {
  // Python: uuid.uuid5(uuid.NAMESPACE_DNS, "python.org")
  assertEquals(
    uuidv5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "python.org"),
    "886313e1-3b8a-5372-9b90-0c9aee199e5d",
  );
});

Deno.test("dict returns are rewritten only when the keys are exactly the outputs", () => {
  const r = rewriteDictReturns('def run(q):\n    return {"output": o, "lse": l}\n', [
    "output",
    "lse",
  ]);
  assertEquals(r.code, "def run(q):\n    return o, l\n");
  assertEquals(
    rewriteDictReturns('    return {"lse": l, "output": o}', ["output", "lse"]).code,
    "    return o, l",
  );
  assertEquals(rewriteDictReturns('    return {"C": C}', ["output"]), {
    code: '    return {"C": C}',
    rewritten: 0,
    unmatched: 1,
  });
});

Deno.test("definitions: type becomes op_type", () => {
  const up = upgradeDefinition({
    name: "g",
    type: "gemm",
    axes: {},
    inputs: {},
    outputs: { C: {} },
    reference: 'def run():\n    return {"C": 1}',
  });
  assert(up.ok);
  assertEquals(up.value.op_type, "gemm");
  assertEquals("type" in up.value, false);
  assertEquals(up.value.reference, "def run():\n    return 1");
  const cur = upgradeDefinition({ name: "g", op_type: "gemm" });
  assert(cur.ok);
  assertEquals(cur.changes, []);
});

Deno.test("solutions: language lower-cased, draft DPS false, entry points without :: rejected", () => {
  const up = upgradeSolution({
    spec: { language: "Triton", entry_point: "main.py::run", build_commands: [] },
    sources: [],
  }, true);
  assert(up.ok);
  assertEquals(up.value.spec, {
    language: "triton",
    entry_point: "main.py::run",
    destination_passing_style: false,
  });
  const bad = upgradeSolution({ spec: { language: "Python", entry_point: "run" } }, true);
  assert(!bad.ok);
  assertMatch(bad.reason, /"run".*flashinfer-bench rejects/);
  const cur = upgradeSolution({ spec: { language: "cuda", entry_point: "k.cu::f" } }, false);
  assert(cur.ok);
  assertEquals(cur.changes, []);
});

Deno.test("trace lines: device → hardware, empty solution/evaluation → null, uuid derived and distinct", () => {
  const line = {
    definition: "g",
    solution: "s",
    workload: { axes: { M: 1 }, inputs: {} },
    evaluation: { status: "PASSED", log_file: "x", environment: { device: "B200", libs: {} } },
  };
  const seen = new Map<string, number>();
  const a = upgradeTraceLine(line, seen);
  const b = upgradeTraceLine(line, seen);
  assert(a.ok && b.ok);
  const ev = a.value.evaluation as Record<string, unknown>;
  assertEquals(ev.environment, { libs: {}, hardware: "B200" });
  assertEquals("log_file" in ev, false);
  const ua = (a.value.workload as { uuid: string }).uuid;
  assertEquals(ua, deriveWorkloadUuid("g", { axes: { M: 1 }, inputs: {} }));
  assertNotEquals(ua, (b.value.workload as { uuid: string }).uuid);
  const w = upgradeTraceLine({
    definition: "g",
    solution: "",
    workload: { uuid: "u", axes: {}, inputs: {} },
    evaluation: {},
  });
  assert(w.ok);
  assertEquals(
    [w.value.solution, w.value.evaluation, (w.value.workload as { uuid: string }).uuid],
    [null, null, "u"],
  );
});
