/**
 * Benchmark: the aggregate over N synthetic traces (default one million).
 *
 *   deno run --allow-all stages/aggregate/bench.ts [TRACES=1000000] [WORKDIR=/tmp/tracepipe-agg-bench]
 *
 * Generates the trace set once (synth.ts, not timed), then times runAggregate end to end.
 */
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { AggregateParams } from "./params.ts";
import { runAggregate } from "./stage.ts";
import { writeSynthTraceSet } from "./synth.ts";

const n = Number(Deno.args[0] ?? 1_000_000);
const work = Deno.args[1] ?? "/tmp/tracepipe-agg-bench";
const data = join(work, `synth-${n}`);
const out = join(work, "out");
if (!existsSync(join(data, "traces"))) {
  const t = performance.now();
  const r = writeSynthTraceSet(data, { traces: n, seed: 1 });
  console.log(
    `generated ${JSON.stringify(r)} in ${
      ((performance.now() - t) / 1000).toFixed(1)
    } s (not timed)`,
  );
}
rmSync(out, { recursive: true, force: true });
const root = new URL("../../", import.meta.url).pathname;
const s = await runAggregate({
  fragments: [{ stage: "synth", cellId: "all", cellKey: "bench", dir: data }],
  params: AggregateParams.parse({}),
  outDir: out,
  root,
  log: console.log,
});
console.log(`BENCH aggregate traces=${s.counts.traces} seconds=${s.seconds.toFixed(2)}`);
