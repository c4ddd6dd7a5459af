import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  checkWorkload,
  decodeSafetensors,
  type Definition,
  loadTraceSet,
  type RawTensor,
} from "../../pipeline/trace/mod.ts";
import { assert, assertEquals, assertMatch, assertThrows } from "../../tests/assert.ts";
import {
  BATCH_SIZES,
  decodeGrid,
  HEAD_CONFIGS,
  HEAD_DIMS,
  KV_LENGTHS,
  kvCacheBytes,
  PAGE_SIZES,
} from "./decode_grid.ts";
import { generateDecodeDefinition, SYNTHETIC_TAG, TEMPLATE_PAGED } from "./decode_definitions.ts";
import {
  type CharacterizationManifest,
  gridIndexTensors,
  writeDecodeGrid,
} from "./decode_write.ts";
import { CHARACTERIZATION_FILE } from "../../pipeline/trace/mod.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const DEFS = new Map(
  [...loadTraceSet(join(ROOT, "data")).set.definitions.values()].map((d) => [d.name, d]),
);
const GiB = 1024 ** 3;

Deno.test("decode grid: the main grid is whole under the budget, and every point over it is dropped with the reason", () => {
  const { points, dropped } = decodeGrid("main", GiB);
  assertEquals(points.length + dropped.length, BATCH_SIZES.length * KV_LENGTHS.length);
  for (const p of points) assert(p.kv_bytes <= GiB, `${p.definition} ${p.batch_size}x${p.kv_len}`);
  for (const d of dropped) {
    assert(d.kv_bytes > GiB);
    assertMatch(d.reason, /over the budget of 1 GiB/);
  }
  // Llama-3.1-8B, d128: 4 KiB of K and V per token, so 256 × 1K = 1 GiB fits and 256 × 2K does not.
  assertEquals(kvCacheBytes(HEAD_CONFIGS[0], 128, 16, 256, 1024), GiB);
  assert(points.some((p) => p.batch_size === 256 && p.kv_len === 1024));
  assert(dropped.some((p) => p.batch_size === 256 && p.kv_len === 2048));
  assert(points.some((p) => p.kv_len === 131072), "128K where it fits (batch 1 and 2)");
  assertEquals(
    new Set(points.map((p) => p.definition)),
    new Set(["gqa_paged_decode_h32_kv8_d128_ps16"]),
  );
  // With a larger budget more of the grid stays.
  assert(decodeGrid("main", 4 * GiB).points.length > points.length);
  assertEquals(decodeGrid("none", GiB).points, []);
});

Deno.test("decode grid: the sparse design covers every head configuration, head_dim and page size once per point", () => {
  const { points } = decodeGrid("sparse", GiB);
  const keys = points.map((p) => `${p.definition} ${p.batch_size} ${p.kv_len}`);
  assertEquals(new Set(keys).size, keys.length);
  for (const c of HEAD_CONFIGS) assert(points.some((p) => p.config === c.id), c.id);
  for (const d of HEAD_DIMS) assert(points.some((p) => p.head_dim === d), `d${d}`);
  for (const ps of PAGE_SIZES) assert(points.some((p) => p.page_size === ps), `ps${ps}`);
  // A main-grid point on a one-dimensional sweep's line belongs to both.
  const shared = points.find((p) =>
    p.definition === "gqa_paged_decode_h32_kv8_d128_ps16" && p.batch_size === 16 &&
    p.kv_len === 4096
  )!;
  assertEquals(shared.sweeps, ["main"]);
  const d64 = points.filter((p) => p.head_dim === 64);
  assertEquals(new Set(d64.flatMap((p) => p.sweeps)), new Set(["head_dim"]));
  assert(decodeGrid("full", GiB).points.length > 10 * points.length);
});

Deno.test("decode definitions: the generator reproduces the dataset's definitions from its template", () => {
  const template = DEFS.get(TEMPLATE_PAGED)!;
  for (const name of ["gqa_paged_decode_h20_kv4_d128_ps64", "gqa_paged_decode_h32_kv4_d128_ps64"]) {
    const official = DEFS.get(name)!;
    const [, qo, kv] = name.match(/_h(\d+)_kv(\d+)_/)!.map(Number);
    const g = generateDecodeDefinition(
      template,
      { num_qo_heads: qo, num_kv_heads: kv, models: ["x"] },
      128,
      64,
    );
    assertEquals(g.name, official.name);
    assertEquals(g.reference, official.reference);
    // Descriptions vary across the dataset's own definitions; the contract is the rest.
    const bare = (specs: Definition["inputs"]) =>
      Object.fromEntries(
        Object.entries(specs).map(([k, v]) => [k, { ...v, description: undefined }]),
      );
    assertEquals(bare(g.inputs), bare(official.inputs));
    assertEquals(bare(g.outputs), bare(official.outputs));
    assertEquals(g.constraints, official.constraints);
    assertEquals(
      Object.fromEntries(
        Object.entries(g.axes).map(([k, a]) => [k, a.type === "const" ? a.value : "var"]),
      ),
      Object.fromEntries(
        Object.entries(official.axes).map(([k, a]) => [k, a.type === "const" ? a.value : "var"]),
      ),
    );
  }
  const d256 = generateDecodeDefinition(template, HEAD_CONFIGS[0], 256, 16);
  assertEquals(d256.name, "gqa_paged_decode_h32_kv8_d256_ps16");
  assertMatch(d256.reference, /assert head_dim == 256\n/);
  assertMatch(d256.reference, /assert page_size == 16\n/);
  assert(d256.tags.includes(SYNTHETIC_TAG));
  assert(
    !d256.tags.some((t) => t.startsWith("model:")),
    "the template's model tags are not copied",
  );
  const broken: Definition = {
    ...template,
    reference: template.reference.replace("assert head_dim", "# "),
  };
  assertThrows(
    () => generateDecodeDefinition(broken, HEAD_CONFIGS[0], 64, 16),
    /assert head_dim == N/,
  );
});

Deno.test("decode grid: index tensors are a scattered permutation of exactly the pages used", () => {
  const t = gridIndexTensors(3, 100, 16, 7);
  assertEquals(t.kvIndptr, [0, 7, 14, 21]);
  assertEquals(t.lastLen, [4, 4, 4]);
  assertEquals([...t.kvIndices].sort((a, b) => a - b), Array.from({ length: 21 }, (_, i) => i));
  assert(t.kvIndices.some((p, i) => p !== i), "pages are not laid out in order");
  assertEquals(gridIndexTensors(3, 100, 16, 7), t, "deterministic for a seed");
});

// A copy first: a Node Buffer's slice shares its pooled ArrayBuffer.
const ints = (t: RawTensor) => [...new Int32Array(new Uint8Array(t.data).buffer)];

Deno.test("decode grid: every written workload has valid index tensors and passes the workload checker", () => {
  const out = mkdtempSync("/tmp/tp-decode-grid-");
  try {
    const s = writeDecodeGrid(DEFS, out, { grid: "sparse", max_kv_bytes: GiB, seed: 0 });
    const m = JSON.parse(
      readFileSync(join(out, CHARACTERIZATION_FILE), "utf8"),
    ) as CharacterizationManifest;
    const { set, diagnostics } = loadTraceSet(out);
    assertEquals(diagnostics.map((d) => d.message), []);
    assertEquals(s.workloads, m.points.length);
    assert(s.generated.includes("gqa_paged_decode_h32_kv8_d128_ps16"));
    assertEquals(s.dataset, [
      "gqa_paged_decode_h32_kv8_d128_ps1",
      "gqa_paged_decode_h32_kv8_d128_ps64",
    ]);
    const byUuid = new Map(
      [...set.workloads.entries()].flatMap(([def, ws]) => ws.map((w) => [w.uuid, { def, w }])),
    );
    for (const p of m.points) {
      const { def: name, w } = byUuid.get(p.uuid)!;
      assertEquals(name, p.definition);
      const def = set.definitions.get(name)!;
      assertEquals(checkWorkload(def, w, out).problems, [], `${name} ${p.batch_size}x${p.kv_len}`);
      const spec = w.inputs.kv_indptr;
      assert(spec.type === "safetensors");
      const { tensors } = decodeSafetensors(readFileSync(join(out, spec.path)));
      const indptr = ints(tensors.kv_indptr), indices = ints(tensors.kv_indices);
      assertEquals(indptr.length, p.batch_size + 1);
      assertEquals(w.axes.len_indptr, p.batch_size + 1);
      assertEquals(w.axes.batch_size, p.batch_size);
      assert(indptr.every((v, i) => i === 0 ? v === 0 : v >= indptr[i - 1]), "indptr monotone");
      assertEquals(indptr[p.batch_size], indices.length);
      assertEquals(w.axes.num_kv_indices, indices.length);
      assert(indices.every((v) => v >= 0 && v < w.axes.num_pages), "indices in range");
      assertEquals(new Set(indices).size, indices.length, "no page shared");
      const last = p.page_size === 1
        ? indptr.map(() => 1).slice(1)
        : ints(tensors.kv_last_page_len);
      assert(last.every((v) => v >= 1 && v <= p.page_size), "last_page_len in 1..page_size");
      for (let b = 0; b < p.batch_size; b++) {
        assertEquals((indptr[b + 1] - indptr[b] - 1) * p.page_size + last[b], p.kv_len);
      }
      assertEquals(w.inputs.sm_scale, { type: "scalar", value: 1 / Math.sqrt(p.head_dim) });
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

Deno.test("decode grid: a missing template is one line naming it", () => {
  const out = mkdtempSync("/tmp/tp-decode-grid-");
  try {
    const noTemplate = new Map([...DEFS].filter(([n]) => n !== TEMPLATE_PAGED));
    assertThrows(
      () => writeDecodeGrid(noTemplate, out, { grid: "main", max_kv_bytes: GiB, seed: 0 }),
      /template definition gqa_paged_decode_h32_kv8_d128_ps64 is not among the definitions/,
    );
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
