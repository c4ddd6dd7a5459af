/**
 * The definitions stage's loading: roots in order, a name defined twice is an error, supplements
 * (an engine dump's own definitions) fill in only the names the roots lack, and a root that holds no
 * definitions/ folder stops the run in one line.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assert, assertEquals } from "../../tests/assert.ts";
import { REPO_ROOT } from "../../pipeline/engine/mod.ts";
import { runCli } from "../../tests/cli.ts";
import { loadDefinitions } from "./stage.ts";

const DATA = join(REPO_ROOT, "data");
const DUMP = join(REPO_ROOT, "data", "engine-dumps", "llama-3.1-8b-h100");
const MISSING = ["gemm_n1024_k4096", "gemm_n128256_k4096", "gemm_n14336_k4096"];

Deno.test("supplements: a traced dump's definitions fill in the shapes the dataset lacks, never redefine", async () => {
  const plain = await loadDefinitions([DATA], [], null);
  const names = new Set(plain.definitions.map((d) => d.name));
  for (const n of MISSING) assert(!names.has(n), `${n} is in the dataset now: pick another`);
  assertEquals(plain.supplemented, []);

  const filled = await loadDefinitions([DATA], [], null, [DUMP]);
  assertEquals(filled.supplemented, MISSING);
  assertEquals(filled.definitions.length, plain.definitions.length + MISSING.length);
  assertEquals(
    filled.diagnostics.filter((d) => d.level === "error"),
    plain.diagnostics.filter((d) => d.level === "error"),
  );
  // A name both define keeps the dataset's definition (fp16 there; the dump traced bf16).
  const o = filled.definitions.find((d) => d.name === "gemm_n4096_k4096")!;
  assertEquals(o.inputs.A.dtype, "float16");
  const kv = filled.definitions.find((d) => d.name === "gemm_n1024_k4096")!;
  assertEquals(kv.inputs.A.dtype, "bfloat16");

  // The same dump as a root, not a supplement: each name it shares is a duplicate error.
  const twice = await loadDefinitions([DATA, DUMP], [], null);
  const dup = twice.diagnostics.filter((d) => /duplicate definition/.test(d.message));
  assertEquals(dup.length, 7);
});

Deno.test("a definitions root or supplement with no definitions/ folder is one line naming the param, exit 2", async () => {
  const store = mkdtempSync(join(tmpdir(), "tp-defs-"));
  try {
    for (
      const [set, want] of [
        ['definitions.roots=["data","data/nope"]', 'definitions.roots[1]: "data/nope" has no'],
        ['definitions.supplements=["nope"]', 'definitions.supplements[0]: "nope" has no'],
      ]
    ) {
      const r = await runCli([
        "reproduce",
        "--store",
        store,
        "--only",
        "definitions",
        "--set",
        set,
      ]);
      assertEquals(r.code, 2, r.text);
      const lines = r.err.trim().split("\n");
      assertEquals(lines.length, 1, r.err);
      assert(lines[0].startsWith(`error: ${want} definitions/ folder`), lines[0]);
    }
  } finally {
    rmSync(store, { recursive: true, force: true });
  }
});
