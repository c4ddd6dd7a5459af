/**
 * The workloads a definition is judged on: those that came with a corpus first, then the extracted
 * ones, so `max_workloads` never leaves a corpus unjudged on the workloads its authors used.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPO_ROOT } from "../engine/mod.ts";
import { formatJsonl, type RootedWorkload, workloadsPath } from "../trace/mod.ts";
import { assertEquals } from "../../tests/assert.ts";
import { corpusWorkloadsFirst, mergeUpstream, SelectionParams } from "./mod.ts";
import { corpusRootsOf, workloadsFor } from "../../stages/verify/stage.ts";

const DEF = "rmsnorm_h128";

/** A TraceSet fragment holding random-input workloads of DEF with these uuids and batch sizes. */
function fragment(workloads: Array<[string, number]>, withDefinition = false): string {
  const dir = mkdtempSync(join(tmpdir(), "tp-order-"));
  if (withDefinition) {
    mkdirSync(join(dir, "definitions/rmsnorm"), { recursive: true });
    writeFileSync(
      join(dir, `definitions/rmsnorm/${DEF}.json`),
      readFileSync(join(REPO_ROOT, "data/definitions/rmsnorm", `${DEF}.json`), "utf8"),
    );
  }
  if (workloads.length) {
    const rel = workloadsPath("rmsnorm", DEF);
    mkdirSync(join(dir, rel, ".."), { recursive: true });
    writeFileSync(
      join(dir, rel),
      formatJsonl(workloads.map(([uuid, batch]) => ({
        definition: DEF,
        workload: { axes: { batch_size: batch }, inputs: {}, uuid },
        solution: null,
        evaluation: null,
      }))),
    );
  }
  return dir;
}

const cell = (id: string, dir: string) => ({ id, key: id, digest: id, dir, summary: null });

Deno.test("corpusWorkloadsFirst: a corpus's workloads first, each group in merge order", () => {
  const w = (uuid: string, root: string): RootedWorkload => ({
    workload: { axes: {}, inputs: {}, uuid },
    root,
  });
  const order = corpusWorkloadsFirst(
    [w("e1", "/x"), w("c1", "/c"), w("e2", "/y"), w("c2", "/c"), w("d1", "/d")],
    new Set(["/c", "/d"]),
  ).map((x) => x.workload.uuid);
  assertEquals(order, ["c1", "c2", "d1", "e1", "e2"]);
});

Deno.test("verify judges a corpus on its own workloads first, whatever max_workloads leaves out", () => {
  const upstream = {
    definitions: [cell("definitions", fragment([], true))],
    extract: [
      cell("llama", fragment([["ext-1", 1], ["ext-2", 2], ["ext-3", 3]])),
      cell("official-repair", fragment([["off-1", 4]])),
    ],
    generate: [
      cell("corpus/b", fragment([["corp-b", 6]])),
      cell("corpus/a", fragment([["corp-a1", 5], ["corp-a2", 7]])),
      cell("sweep/x", fragment([])),
    ],
  };
  const merged = mergeUpstream(upstream, ["definitions", "extract", "generate"]);
  const roots = corpusRootsOf(upstream);
  assertEquals(roots.size, 2, "only the corpus imports' fragments are corpus roots");
  const chosen = workloadsFor(merged, DEF, 4, [], roots).map((w) => w.workload.uuid);
  assertEquals(chosen, ["corp-a1", "corp-a2", "corp-b", "ext-1"]);
  assertEquals(
    workloadsFor(merged, DEF, 0, [], roots).map((w) => w.workload.uuid),
    ["corp-a1", "corp-a2", "corp-b", "ext-1", "ext-2", "ext-3", "off-1"],
    "all of them: corpora first, then the extracted ones in cell-id order",
  );
});

Deno.test("SelectionParams: a definition_regex that is no regular expression is a user error, named", () => {
  const bad = SelectionParams.safeParse({ definition_regex: "gemm_(n4096" });
  assertEquals(bad.success, false);
  if (!bad.success) {
    assertEquals(bad.error.issues[0].path, ["definition_regex"]);
    assertEquals(bad.error.issues[0].message, "not a valid regular expression");
  }
  assertEquals(
    SelectionParams.parse({ definition_regex: "^gemm_(n4096)$" }).definition_regex,
    "^gemm_(n4096)$",
  );
});
