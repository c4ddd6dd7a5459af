import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTraceSet } from "../../pipeline/trace/mod.ts";
import { assert, assertEquals, assertMatch } from "../../tests/assert.ts";
import { writeDecodeGrid } from "../extract/decode_write.ts";
import { runAggregate } from "./aggregate.ts";
import {
  batchScaling,
  type CharCell,
  crossovers,
  findings,
  kneeSentence,
} from "./characterization_findings.ts";
import { AggregateParams } from "./params.ts";
import { BASIC } from "./testdata/fixture_run.ts";

const REPO_ROOT = new URL("../..", import.meta.url).pathname;
const COPY_TBS = 3.001;

/** An implementation under the two-regime model: latency = max(floor, bytes / bandwidth). */
interface Model {
  name: string;
  floorUs: number;
  tbs: number;
}
const latencyMs = (m: Model, bytes: number) => Math.max(m.floorUs * 1e-3, bytes / (m.tbs * 1e9));
// A low-overhead kernel that streams slowly and a heavier one that streams fast: they must cross.
const LEAN: Model = { name: "lean", floorUs: 5, tbs: 1.2 };
const WIDE: Model = { name: "wide", floorUs: 12, tbs: 2.7 };

function cell(m: Model, batch: number, kv: number, bytesPerToken = 4096): CharCell {
  const bytes = batch * kv * bytesPerToken;
  const latency_ms = latencyMs(m, bytes);
  const achieved_tbs = bytes / (latency_ms * 1e-3) / 1e12;
  return {
    series: "llama 32/8 d128 ps16",
    implementation: m.name,
    batch_size: batch,
    kv_len: kv,
    latency_ms,
    bytes,
    achieved_tbs,
    pct_copy_bw: (100 * achieved_tbs) / COPY_TBS,
  };
}
const KVS = [128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768];

Deno.test("knee: launch-bound below floor × peak bandwidth, bandwidth-bound above", () => {
  const k = kneeSentence(KVS.map((kv) => cell(WIDE, 1, kv)))!;
  // 12 µs at 2.7 TB/s is 32.4 MB, i.e. 7.7K tokens of 4 KiB at batch 1.
  assertMatch(
    k.sentence,
    /^wide on .* at batch 1 is launch\/latency-bound below about 7\.7K tokens/,
  );
  assertMatch(k.sentence, /reaching 90 % of the copy bandwidth at 8K\.$/);
  const lean = kneeSentence(KVS.map((kv) => cell(LEAN, 1, kv)))!;
  assertMatch(lean.sentence, /is not bandwidth-bound up to 32K tokens: it reaches at most 40 %/);
  const big = kneeSentence(KVS.map((kv) => cell(WIDE, 256, kv)))!;
  assertMatch(big.sentence, /bandwidth-bound over the whole range \(128–32K tokens\)/);
  assertEquals(kneeSentence(KVS.slice(0, 2).map((kv) => cell(WIDE, 1, kv))), null);
});

Deno.test("crossovers: where the lead changes sides, along KV length and along batch", () => {
  const row = KVS.flatMap((kv) => [cell(LEAN, 1, kv), cell(WIDE, 1, kv)]);
  const [x] = crossovers(row, "kv_len", "batch 1");
  // lean = wide where bytes / 1.2 TB/s = 12 µs: 14.4 MB, 3.5K tokens.
  assertMatch(
    x.sentence,
    /lean is faster up to 2K tokens and wide from 4K tokens \(crossover near 3\.\dK tokens\)/,
  );
  assertEquals(crossovers(row.filter((c) => c.implementation === "lean"), "kv_len", "x"), []);
  const col = [1, 2, 4, 8, 16, 32].flatMap((b) => [cell(LEAN, b, 1024), cell(WIDE, b, 1024)]);
  const [y] = crossovers(col, "batch_size", "KV 1K");
  assertMatch(y.sentence, /lean is faster up to 2 and wide from 4 \(crossover near batch 3\.\d+\)/);
  // Within the tie ratio there is no lead, so no crossover.
  const tie = KVS.flatMap((
    kv,
  ) => [cell(WIDE, 1, kv), { ...cell(WIDE, 1, kv), implementation: "twin" }]);
  assertEquals(crossovers(tie, "kv_len", "batch 1"), []);
});

Deno.test("batch scaling: latency growth against batch growth at the longest KV with three batches", () => {
  const curve = [
    ...[1, 4, 16, 64].map((b) => cell(WIDE, b, 1024)),
    ...[1, 4].map((b) => cell(WIDE, b, 2048)),
  ];
  const s = batchScaling(curve)!;
  assertEquals(s.at, "KV 1K");
  // 12 µs at batch 1 (the floor), 64 × 4 MiB at 2.7 TB/s = 99.4 µs at batch 64.
  assertMatch(s.sentence, /from batch 1 to 64 \(64×\) latency grows 8\.29× \(12 µs → 99\.4 µs\)/);
  assertMatch(s.sentence, /time per sequence falls 7\.72×/);
  assertEquals(findings(curve).filter((f) => f.kind === "batch_scaling").length, 1);
  // Latency growing faster than the batch (a host-bound loop): the time per sequence rises.
  const serial = [[1, 0.5], [4, 2.5], [16, 10]].map(([b, ms]) => ({
    ...cell(WIDE, b, 1024),
    latency_ms: ms,
  }));
  assertMatch(batchScaling(serial)!.sentence, /time per sequence rises 1\.25×/);
});

const SOLUTION = (name: string, def: string) => ({
  name,
  definition: def,
  author: "tracepipe",
  spec: {
    language: "python",
    target_hardware: ["NVIDIA H100"],
    entry_point: "k.py::run",
    dependencies: [],
    destination_passing_style: false,
  },
  sources: [{
    path: "k.py",
    content:
      "def run(q, k_cache, v_cache, kv_indptr, kv_indices, kv_last_page_len, sm_scale):\n    pass\n",
  }],
});

/** Fixture traces over a real grid: every point judged by both models, one cell failed. */
function writeFixture(dir: string): string {
  const ext = join(dir, "extract");
  writeDecodeGrid(
    new Map([...loadTraceSet(join(REPO_ROOT, "data")).set.definitions].map(([n, d]) => [n, d])),
    ext,
    { grid: "main", max_kv_bytes: 256 * 1024 ** 2, seed: 0 },
  );
  const { set } = loadTraceSet(ext);
  const judged = join(dir, "time");
  for (const [def, ws] of set.workloads) {
    const lines: string[] = [];
    for (const m of [LEAN, WIDE]) {
      const sol = `${m.name}__${def}`;
      const sp = join(judged, "solutions/tracepipe/gqa_paged", def, `${sol}.json`);
      mkdirSync(join(sp, ".."), { recursive: true });
      writeFileSync(sp, JSON.stringify(SOLUTION(sol, def)));
      for (const [i, w] of ws.entries()) {
        const bytes = (w.axes.num_kv_indices as number) * 16 * 4096;
        const failed = m === LEAN && i === 0;
        lines.push(JSON.stringify({
          definition: def,
          workload: w,
          solution: sol,
          evaluation: {
            status: failed ? "RUNTIME_ERROR" : "PASSED",
            environment: { hardware: "NVIDIA H100 80GB HBM3", libs: {} },
            timestamp: "2026-12-07T00:00:00",
            log: "",
            ...(failed ? {} : {
              correctness: { max_relative_error: 0, max_absolute_error: 0 },
              performance: {
                latency_ms: latencyMs(m, bytes),
                reference_latency_ms: 1,
                speedup_factor: 1 / latencyMs(m, bytes),
              },
            }),
          },
        }));
      }
    }
    mkdirSync(join(judged, "traces/tracepipe/gqa_paged"), { recursive: true });
    writeFileSync(
      join(judged, "traces/tracepipe/gqa_paged", `${def}.jsonl`),
      lines.join("\n") + "\n",
    );
  }
  return ext;
}

const frag = (stage: string, dir: string) => ({ stage, cellId: stage, cellKey: "k", dir });

Deno.test("report: the characterization section renders from fixture traces, and only when the grid was judged", async () => {
  const dir = mkdtempSync(join(tmpdir(), "agg-char-"));
  try {
    const ext = writeFixture(dir);
    const out = join(dir, "out");
    // Two time cells with the clocks the harness logged around their measurement: one at 1980 MHz,
    // one at 1755 MHz with a thermal slowdown (0x20) seen; idle (0x1) alone is no throttling.
    const { set } = loadTraceSet(ext);
    const [def, ws] = [...set.workloads].find(([d]) => d.endsWith("_ps16"))!;
    const clocked = [["1980", "0x0000000000000001"], ["1755", "0x0000000000000020"]].map(
      ([mhz, seen], i) => {
        const cell = join(dir, `timed-${i}`);
        mkdirSync(cell);
        writeFileSync(
          join(cell, "timing.json"),
          JSON.stringify({
            solution: `${WIDE.name}__${def}`,
            workload: ws[i + 1].uuid,
            details: {
              rigor: [],
              clocks: {
                before: { clocks_sm: "1980", clocks_event_reasons_seen: "0x0000000000000000" },
                after: { clocks_sm: mhz, clocks_event_reasons_seen: seen },
              },
            },
          }),
        );
        return { ...frag("time", cell), summary: { definition: def, workload: ws[i + 1].uuid } };
      },
    );
    const s = await runAggregate({
      fragments: [frag("extract", ext), frag("time", join(dir, "time")), ...clocked],
      params: AggregateParams.parse({}),
      outDir: out,
      root: REPO_ROOT,
      log: () => {},
    });
    const page = readFileSync(join(out, "index.html"), "utf8");
    const cellsCsv = readFileSync(join(out, "tables", "characterization_cells.csv"), "utf8");
    const timedRows = cellsCsv.split("\n").filter((l) => /,1980,false$|,1755,true$/.test(l));
    assertEquals(timedRows.length, 2, cellsCsv.slice(0, 400));
    const passing = cellsCsv.trim().split("\n").length - 1;
    assertMatch(
      page,
      new RegExp(
        `Clocks: 2 of ${passing} timed cells logged their SM clock, 1755–1980 MHz; 1 saw a ` +
          `throttling reason during their measurement \\(${passing - 2} without a reading`,
      ),
    );
    assertMatch(page, /<a href="#characterization">Decode characterization<\/a>/);
    assertMatch(page, /<h2 id="characterization">Decode characterization<\/h2>/);
    assertMatch(
      page,
      /wide on llama-3\.1-8b 32\/8 d128 ps16 at batch 1 is launch\/latency-bound below about/,
    );
    assertMatch(page, /lean is faster up to [\d.K]+ tokens and wide from/);
    for (
      const id of ["characterization_cells", "characterization_best", "characterization_findings"]
    ) {
      assert(s.tables.includes(id), id);
      assert(existsSync(join(out, "tables", `${id}.csv`)), id);
    }
    const unjudged = readFileSync(join(out, "tables", "characterization_unjudged.csv"), "utf8");
    assertEquals(unjudged.trim().split("\n").length, 1, "every point has a passing implementation");
    const chart = "characterization_llama_3_1_8b_32_8_d128_ps16_latency_vs_kv";
    assert(s.charts.includes(chart), s.charts.join(" "));
    assertMatch(readFileSync(join(out, "charts", `${chart}.svg`), "utf8"), /^<svg/);
    assert(s.charts.includes("characterization_best_heatmap"));
    const best = readFileSync(join(out, "tables", "characterization_best.csv"), "utf8");
    assertMatch(best, /,lean,/);
    assertMatch(best, /,wide,/);
    // The same traces without the grid's manifest are ordinary traces: no section.
    rmSync(join(ext, "characterization.json"));
    const plain = join(dir, "plain");
    await runAggregate({
      fragments: [frag("extract", ext), frag("time", join(dir, "time"))],
      params: AggregateParams.parse({}),
      outDir: plain,
      root: REPO_ROOT,
      log: () => {},
    });
    assert(!readFileSync(join(plain, "index.html"), "utf8").includes('id="characterization"'));
    assert(!existsSync(join(plain, "tables", "characterization_cells.csv")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("report: a run without the grid renders no characterization section", async () => {
  const out = mkdtempSync(join(tmpdir(), "agg-char-"));
  try {
    await runAggregate({
      fragments: [frag("extract", BASIC)],
      params: AggregateParams.parse({}),
      outDir: out,
      root: REPO_ROOT,
      log: () => {},
    });
    const page = readFileSync(join(out, "index.html"), "utf8");
    assert(!page.includes("characterization"), "no nav link, no section");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
