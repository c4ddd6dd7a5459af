/** The characterization manifest is read with its shape checked: a bad one is one line naming the field. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { readManifestPoints } from "./characterization.ts";

const point = {
  uuid: "u1",
  definition: "gqa_paged_decode_h32_kv8_d128_ps16",
  config: "llama",
  num_qo_heads: 32,
  num_kv_heads: 8,
  head_dim: 128,
  page_size: 16,
  batch_size: 4,
  kv_len: 1024,
  kv_bytes: 2 ** 21,
  sweeps: ["main"],
};

Deno.test("a characterization manifest's points are read; a bad field is named with its file", () => {
  const dir = mkdtempSync(join(tmpdir(), "tp_manifest_"));
  const good = join(dir, "good.json");
  writeFileSync(good, JSON.stringify({ version: 1, points: [point] }));
  assertEquals(readManifestPoints(good), [point]);
  const bad = join(dir, "bad.json");
  writeFileSync(bad, JSON.stringify({ points: [{ ...point, batch_size: "four" }] }));
  const e = assertThrows(() => readManifestPoints(bad));
  assertEquals(e.message.split("\n").length, 1);
  assertEquals(e.message.startsWith(`${bad}: $.points[0].batch_size: `), true);
  const broken = join(dir, "broken.json");
  writeFileSync(broken, "{");
  assertEquals(
    assertThrows(() => readManifestPoints(broken)).message.startsWith(`${broken}: $: `),
    true,
  );
});
