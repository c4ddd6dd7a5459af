/**
 * tools/kcheck.py on real PyTorch (CPU mode): a correct kernel passes on the repository's
 * own rmsnorm workloads and exits 0; a kernel folder computing the wrong thing is reported with its
 * status and exits 1; `export` copies workloads with their blobs.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { discoverToolchain, REPO_ROOT } from "../pipeline/engine/mod.ts";
import { assert, assertEquals, assertMatch } from "../tests/assert.ts";

const tc = await discoverToolchain();
const python = tc.python?.torch ? tc.python.path : null;
if (!python) {
  console.log("skipping kcheck tests: no Python with torch (apt-get install python3-torch)");
}

async function kcheck(args: string[]): Promise<{ code: number; out: string }> {
  const o = await new Deno.Command(python!, {
    args: [join(REPO_ROOT, "tools", "kcheck.py"), ...args],
    env: { TRACEPIPE_PYTHON: python! },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: o.code, out: new TextDecoder().decode(o.stdout) };
}

/** A python rmsnorm kernel folder returning `body` (x: the fp32 input, n: its inverse RMS). */
function rmsnormKernel(name: string, body: string): string {
  const dir = mkdtempSync(join(tmpdir(), "tp-kcheck-"));
  writeFileSync(
    join(dir, "kernel.json"),
    JSON.stringify({
      name,
      author: "tester",
      op_type: "rmsnorm",
      definition_regex: "^rmsnorm_h\\d+$",
      spec: {
        language: "python",
        target_hardware: ["cpu"],
        entry_point: "g.py::run",
        destination_passing_style: false,
        dependencies: [],
      },
      sources: ["g.py"],
      params: {},
      default: {},
    }),
  );
  writeFileSync(
    join(dir, "g.py"),
    "import torch\n\ndef run(h, w):\n    x = h.float()\n" +
      "    n = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)\n" +
      `    return (${body} * w.float()).to(h.dtype)\n`,
  );
  return dir;
}

Deno.test({
  name: "kcheck: a correct kernel passes, a wrong one is reported and fails the run",
  ignore: !python,
  async fn() {
    const args = ["check", "--data", join(REPO_ROOT, "data"), "--defs", "^rmsnorm_h128$"];
    const good = rmsnormKernel("right_rmsnorm", "x * n");
    const ok = await kcheck([...args, "--kernel", good, "--max-workloads", "2"]);
    assertEquals(ok.code, 0, ok.out);
    assertEquals(
      (ok.out.match(/^verify right_rmsnorm__rmsnorm_h128__default \S+ PASSED/gm) ?? []).length,
      2,
      ok.out,
    );
    const wrong = rmsnormKernel("wrong_rmsnorm", "x * n * 1.5");
    const bad = await kcheck([...args, "--kernel", wrong, "--max-workloads", "1"]);
    assertEquals(bad.code, 1, bad.out);
    assertMatch(bad.out, /^verify wrong_rmsnorm__rmsnorm_h128__default \S+ INCORRECT_NUMERICAL/m);
  },
});

Deno.test({
  name: "kcheck export: workloads of the latest extract run travel with their blobs",
  ignore: !python,
  async fn() {
    const store = mkdtempSync(join(tmpdir(), "tp-kcheck-store-"));
    const out = join(store, "cells", "extract", "k1", "out");
    const blob = "./blob/workloads/gqa_paged/d1/b.safetensors";
    mkdirSync(join(out, "workloads", "gqa_paged"), { recursive: true });
    mkdirSync(join(out, "blob", "workloads", "gqa_paged", "d1"), { recursive: true });
    writeFileSync(join(out, blob), "BLOB");
    const rec = {
      definition: "d1",
      solution: null,
      workload: {
        uuid: "u1",
        axes: {},
        inputs: { x: { type: "safetensors", path: blob, tensor_key: "x" } },
      },
      evaluation: null,
    };
    writeFileSync(join(out, "workloads", "gqa_paged", "d1.jsonl"), JSON.stringify(rec) + "\n");
    writeFileSync(
      join(out, "workloads", "gqa_paged", "d2.jsonl"),
      JSON.stringify({ ...rec, definition: "d2" }) + "\n",
    );
    mkdirSync(join(store, "runs"));
    writeFileSync(
      join(store, "runs", "extract.json"),
      JSON.stringify({ cells: [{ id: "m", key: "k1" }] }),
    );
    const to = join(store, "exported");
    const r = await kcheck(["export", "--store", store, "--defs", "^d1$", "--to", to]);
    assertEquals(r.code, 0, r.out);
    assert(existsSync(join(to, "workloads", "gqa_paged", "d1.jsonl")));
    assert(
      !existsSync(join(to, "workloads", "gqa_paged", "d2.jsonl")),
      "d2 does not match the regex",
    );
    assertEquals(readFileSync(join(to, blob), "utf8"), "BLOB");
  },
});
