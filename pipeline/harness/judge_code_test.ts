import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals } from "../../tests/assert.ts";
import { judgeCode, judgeEdges } from "./judge_code.ts";

const base = (files: string[]) => files.map((f) => f.split("/").pop()!);

Deno.test("judge edges: imports of judge modules and judge files started by name", () => {
  const modules = new Set(["th_a.py", "th_b.py", "th_c.py", "th_d.py", "th_e.py"]);
  const src = [
    "import os, th_a",
    "import th_b as B  # noqa",
    "    from th_c import thing  # a lazy import counts",
    'proc = [sys.executable, os.path.join(HERE, "th_d.py")]',
    "# import th_e (a comment is no import)",
    "from torch import th_e",
    "import numpy",
  ].join("\n");
  assertEquals(judgeEdges(src, modules), ["th_a.py", "th_b.py", "th_c.py", "th_d.py"]);
});

Deno.test("each judging command's key holds the judge modules it reaches, not the other commands'", () => {
  const compile = base(judgeCode("compile"));
  const verify = base(judgeCode("verify"));
  const time = base(judgeCode("time"));
  for (const files of [compile, verify, time]) {
    // The entry point, the processes started by file name, the gate's PTX and the C ABI headers.
    for (
      const f of [
        "__main__.py",
        "th_worker.py",
        "th_zygote.py",
        "th_build.py",
        "gate.ptx",
        "include",
      ]
    ) {
      assert(files.includes(f), `${f} missing from ${files.join(" ")}`);
    }
  }
  assert(verify.includes("th_verify.py") && !verify.includes("th_time.py"), verify.join(" "));
  assert(!verify.includes("th_timing.py"), "the timing arithmetic is time's alone");
  assert(time.includes("th_time.py") && time.includes("th_timing.py"), time.join(" "));
  assert(!time.includes("th_verify.py") && !time.includes("th_share.py"), time.join(" "));
  for (const f of ["th_verify.py", "th_time.py", "th_candidate.py", "th_evaluators.py"]) {
    assert(!compile.includes(f), `${f} in compile's key`);
  }
});

Deno.test("judge code of a fixture judge: unreached modules and __pycache__ stay out", () => {
  const root = mkdtempSync(join(tmpdir(), "judge-code-"));
  try {
    const judge = join(root, "pipeline/harness/judge");
    mkdirSync(join(judge, "__pycache__"), { recursive: true });
    writeFileSync(join(judge, "__pycache__", "th_core.cpython-312.pyc"), "");
    writeFileSync(
      join(judge, "__main__.py"),
      "import th_core\nCOMMANDS = {'time': ('th_time', 'cmd_time'), 'verify': ('th_verify', 'cmd_verify')}\n",
    );
    writeFileSync(join(judge, "th_core.py"), "");
    writeFileSync(join(judge, "th_time.py"), "from th_timing import x\n");
    writeFileSync(join(judge, "th_timing.py"), "import th_core\n");
    writeFileSync(join(judge, "th_verify.py"), "import th_core\n");
    writeFileSync(join(judge, "th_compile.py"), "");
    writeFileSync(join(judge, "gate.ptx"), "");
    assertEquals(base(judgeCode("time", root)), [
      "include",
      "__main__.py",
      "gate.ptx",
      "th_core.py",
      "th_time.py",
      "th_timing.py",
    ]);
    assertEquals(base(judgeCode("verify", root)), [
      "include",
      "__main__.py",
      "gate.ptx",
      "th_core.py",
      "th_verify.py",
    ]);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
