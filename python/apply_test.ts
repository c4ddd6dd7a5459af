/**
 * tracepipe_apply (python/) from the Deno suite: its Python tests on the CPU with /usr/bin/python3
 * (or TRACEPIPE_PYTHON), a traced generation checked by `tp validate` and taken by `collect` as an
 * engine dump, and the runtime's ranked table checked against the apply stage's. Skipped, with the
 * reason printed, when torch is missing.
 */
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { assert, assertEquals } from "../tests/assert.ts";
import type { CellResult } from "../pipeline/engine/mod.ts";
import { loadTraceSet, validatePath } from "../pipeline/trace/mod.ts";
import { runCellDirect } from "../tests/stages.ts";
import { ApplyParams, applyStage } from "../stages/apply/mod.ts";
import { CollectParams, collectStage } from "../stages/collect/mod.ts";
import { runCli } from "../tests/cli.ts";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = dirname(HERE);
const PY = Deno.env.get("TRACEPIPE_PYTHON") ?? "/usr/bin/python3";
const ENV = { PYTHONPATH: `${HERE}:${join(HERE, "tests")}`, PYTHONUNBUFFERED: "1" };

async function python(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await new Deno.Command(PY, {
    args,
    env: ENV,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const dec = new TextDecoder();
  return { code: r.code, stdout: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

async function torchImportable(): Promise<string | null> {
  try {
    const r = await python(["-c", "import torch"]);
    return r.code === 0 ? null : `${PY} cannot import torch: ${r.stderr.trim().split("\n").pop()}`;
  } catch (e) {
    return `${PY} not runnable: ${e}`;
  }
}

const skip = await torchImportable();
if (skip) console.log(`SKIP python/ apply tests: ${skip} (apt-get install python3-torch)`);

Deno.test({
  name:
    "python: tracepipe_apply's unit tests pass on the CPU (GPU scripts skipped with their reason)",
  ignore: skip !== null,
  async fn() {
    const r = await python(["-m", "unittest", "discover", "-s", join(HERE, "tests"), "-v"]);
    const lines = r.stderr.split("\n");
    console.log(
      lines.filter((l) => /\.\.\. skipped|FAIL|ERROR|^Ran |^OK|^FAILED/.test(l)).join("\n"),
    );
    assertEquals(r.code, 0, `python tests failed:\n${r.stderr.slice(-4000)}`);
    assert(/^OK/m.test(r.stderr), "unittest summary missing");
  },
});

Deno.test({
  name: "python: a traced generation passes `tp validate` and collect takes it as an engine dump",
  ignore: skip !== null,
  async fn() {
    const out = mkdtempSync("/tmp/tp-apply-trace-");
    const r = await python([join(HERE, "tests", "trace_tiny.py"), out]);
    assertEquals(r.code, 0, r.stderr);
    const res = JSON.parse(r.stdout.trim().split("\n").pop()!);
    assertEquals([res.errors, res.skipped], [{}, {}]);
    const v = await validatePath(out);
    assertEquals(v.diagnostics, []);
    const { set } = loadTraceSet(out);
    const total = Object.values(res.calls as Record<string, number>).reduce((a, b) => a + b, 0);
    assertEquals([...set.workloads.values()].reduce((a, w) => a + w.length, 0), total);
    const params = CollectParams.parse({ traces: [], models: [], dumps: [out] });
    const ctx = {
      params,
      root: ROOT,
      upstream: {},
      toolchain: {} as never,
      env: {},
      log: () => {},
    };
    const [cell] = await collectStage.plan(ctx);
    const cellOut = mkdtempSync("/tmp/tp-apply-collect-");
    await collectStage.run!({
      plan: cell,
      key: "k",
      outDir: cellOut,
      log: () => {},
      setSummary: () => {},
      signal: new AbortController().signal,
    }, ctx);
    assertEquals(
      loadTraceSet(cellOut).set.workloads.get("rmsnorm_h64")?.length,
      res.calls.rmsnorm_h64,
    );
  },
});

Deno.test("python: the tiny-Llama fixture TraceSet passes `tp validate`", async () => {
  const v = await validatePath(join(HERE, "tests", "fixtures", "tiny_llama"));
  assertEquals(v.diagnostics, []);
});

/** Runs the apply stage on a TraceSet folder split as the upstream cells hold it. */
async function applyCell(root: string, params: Partial<ApplyParams>): Promise<string> {
  const part = (sub: string): CellResult => {
    const dir = mkdtempSync(`/tmp/tp-apply-${sub}-`);
    cpSync(join(root, sub), join(dir, sub), { recursive: true });
    return { id: sub, key: "k", digest: sub, dir, summary: null };
  };
  const upstream = {
    definitions: [part("definitions")],
    generate: [part("solutions")],
    verify: [],
    time: [part("traces")],
  };
  const ctx = {
    params: ApplyParams.parse(params),
    root: ROOT,
    upstream,
    toolchain: {} as never,
    env: {},
    log: () => {},
  };
  const [plan] = await applyStage.plan(ctx);
  return await runCellDirect(applyStage, plan, ctx);
}

const CROSS_CHECK = `
import json, sys
from tracepipe_apply import ApplyConfig, ApplyConfigRegistry, TraceSet
from tracepipe_apply.table import build_table, load_pinned
cell, rtol = sys.argv[1], float(sys.argv[2])
t = build_table(TraceSet.from_path(cell), ApplyConfigRegistry(ApplyConfig(max_rtol=rtol)))
print(json.dumps({"table": t, "pinned": load_pinned(cell)[1], "folder": load_pinned(cell + "/pinned")[1]}))
`;

Deno.test({
  name: "python: the runtime builds the apply stage's ranked table and reads its pinned choice",
  ignore: skip !== null,
  async fn() {
    const sets = [
      [join(ROOT, "tests/fixtures/aggregate/basic"), 1e-2],
      [join(HERE, "tests/fixtures/tiny_llama"), 1e-5],
    ] as const;
    for (const [root, rtol] of sets) {
      const cell = await applyCell(root, { max_rtol: rtol });
      const r = await python(["-c", CROSS_CHECK, cell, String(rtol)]);
      assertEquals(r.code, 0, r.stderr);
      const py = JSON.parse(r.stdout);
      const ts = JSON.parse(await Deno.readTextFile(join(cell, "apply_table.json")));
      const pinned = JSON.parse(await Deno.readTextFile(join(cell, "pinned.json")));
      assert(Object.keys(ts.index).length > 0, root);
      assertEquals(py.table.index, ts.index, root);
      assertEquals(py.table.def_best, ts.def_best, root);
      assertEquals(py.table.ranked, ts.ranked, root);
      assertEquals(py.pinned, pinned.solutions, root);
      assertEquals(py.folder, pinned.solutions, root);
    }
  },
});

Deno.test({
  name:
    "python: a traced generation runs through `reproduce` under profiles/llama-traced.json: extract writes its workloads alone, verify judges them",
  ignore: skip !== null,
  async fn() {
    const out = mkdtempSync("/tmp/tp-traced-");
    const r = await python([join(HERE, "tests", "trace_tiny.py"), out]);
    assertEquals(r.code, 0, r.stderr);
    const calls = JSON.parse(r.stdout.trim().split("\n").pop()!).calls as Record<string, number>;
    // The shipped profile, pointed at this trace (its roots are repo-relative) and its tiny shapes.
    const profile = JSON.parse(readFileSync(join(ROOT, "profiles", "llama-traced.json"), "utf8"));
    const rel = relative(ROOT, out);
    // The trace's own definitions fill in its tiny shapes, as the shipped trace's fill in the three
    // GEMMs the dataset lacks.
    profile.definitions.supplements = [rel];
    profile.collect.dumps = [rel];
    for (const stage of ["compile", "verify", "time"]) {
      profile[stage].definition_regex = "^(rmsnorm_h64|gemm_n64_k64)$";
    }
    const profilePath = join(mkdtempSync("/tmp/tp-traced-profile-"), "profile.json");
    writeFileSync(profilePath, JSON.stringify(profile));
    const store = mkdtempSync("/tmp/tp-traced-store-");
    const run = await runCli([
      "reproduce",
      "--store",
      store,
      "--profile",
      profilePath,
      "--to",
      "verify",
    ]);
    assertEquals(run.code, 0, run.text);
    const [extractCell] = JSON.parse(readFileSync(join(store, "runs", "extract.json"), "utf8"))
      .cells;
    assertEquals(extractCell.id, "dumps");
    const report = JSON.parse(
      readFileSync(join(store, "cells", "extract", extractCell.key, "out", "report.json"), "utf8"),
    );
    assertEquals(report.workloads, Object.values(calls).reduce((a, b) => a + b, 0));
    assertEquals(report.unknown, []);
    const verified = JSON.parse(readFileSync(join(store, "runs", "verify.json"), "utf8"));
    const judged = verified.cells.length; // the run index lists the cells not runnable here apart
    assert(judged > 0, `verify judged none of the traced workloads:\n${run.out.slice(-1500)}`);
    assertEquals(verified.failed, []);
  },
});
