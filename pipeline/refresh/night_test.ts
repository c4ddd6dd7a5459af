/** The night's params: the profile, the sources' `set` overrides, and the fetched inputs appended. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertEquals, assertMatch, assertThrows } from "../../tests/assert.ts";
import { applySets, readProfile, withInputs } from "./night.ts";

Deno.test("applySets: nested keys, values read as JSON when they parse, a bad one named", () => {
  const p = applySets({ verify: { num_trials: 3 } }, [
    "verify.num_trials=1",
    'generate.corpus=["data/corpus/x"]',
    "generate.kernels.mode=default",
  ], "s.json");
  assertEquals(p, {
    verify: { num_trials: 1 },
    generate: { corpus: ["data/corpus/x"], kernels: { mode: "default" } },
  });
  assertMatch(
    assertThrows(() => applySets({}, ["verify.x=1", "nostage.x=1"], "s.json")).message,
    /^s\.json: \$\.set\[1\]: "nostage\.x=1" is not STAGE\.KEY=VALUE/,
  );
});

Deno.test("withInputs appends corpora and serving traces to the profile's lists or the stages' defaults", () => {
  const source = { name: "t", sha256: "a".repeat(64), format: "azure-csv" as const, limit: 10 };
  const defaults = { corpus: ["data/corpus/default"], traces: [{ name: "azure-conv" }] };
  const inputs = { corpora: ["/c/up"], servingTraces: [{ source, path: "cache/t.csv" }] };
  assertEquals(withInputs({}, inputs, defaults), {
    generate: { corpus: ["data/corpus/default", "/c/up"] },
    collect: {
      traces: [{ name: "azure-conv" }, {
        name: "t",
        path: "cache/t.csv",
        format: "azure-csv",
        limit: 10,
      }],
    },
  });
  const own = withInputs({ generate: { corpus: [] }, collect: { traces: [] } }, inputs, defaults);
  assertEquals([own.generate.corpus, (own.collect.traces as unknown[]).length], [["/c/up"], 1]);
  assertEquals(withInputs({ verify: {} }, { corpora: [], servingTraces: [] }, defaults), {
    verify: {},
  });
});

Deno.test("readProfile: a missing file, malformed JSON and an unknown stage, each named", () => {
  const dir = mkdtempSync(join(tmpdir(), "tp-night-"));
  try {
    const f = join(dir, "p.json");
    assertMatch(
      assertThrows(() => readProfile(f, "p.json")).message,
      /^p\.json: \$: the profile does not exist/,
    );
    writeFileSync(f, "{");
    assertMatch(
      assertThrows(() => readProfile(f, "p.json")).message,
      /^p\.json: \$: malformed JSON/,
    );
    writeFileSync(f, '{"verfy": {}}');
    assertMatch(
      assertThrows(() => readProfile(f, "p.json")).message,
      /^p\.json: \$\.verfy: unknown stage/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
