/**
 * The characterization section's findings, as sentences generated from the measured points (never
 * written by hand): where each implementation stops being launch/latency-bound and becomes
 * bandwidth-bound (the knee), where two implementations swap places (crossovers, along KV length and
 * along batch size), and how latency grows with the batch. Pure functions over plain rows, so the
 * rules are tested without a database.
 */

/** One passing (implementation, grid point) cell. */
export interface CharCell {
  series: string;
  implementation: string;
  batch_size: number;
  kv_len: number;
  latency_ms: number;
  /** Bytes the call must move (roofline.ts). */
  bytes: number;
  achieved_tbs: number;
  pct_copy_bw: number;
}

/** One generated finding. */
export interface Finding {
  kind: "knee" | "crossover_kv" | "crossover_batch" | "batch_scaling";
  series: string;
  implementation: string;
  /** Where along the other axis it holds: "batch 16" or "KV 4K". */
  at: string;
  sentence: string;
}

/** Below this share of the copy bandwidth a series is not called bandwidth-bound. */
export const BANDWIDTH_BOUND_PCT = 50;
/** Latencies closer than this ratio are a tie, not a lead (the time stage's run-to-run spread). */
export const TIE_RATIO = 1.03;

/** A token count as the grid names it: 512, 4K, 128K. */
export const tokens = (n: number) =>
  n >= 1024 ? `${+(n / 1024).toFixed(n % 1024 ? 1 : 0)}K` : String(Math.round(n));
const us = (ms: number) => `${+(ms * 1e3).toPrecision(3)} µs`;
const pct = (p: number) => `${Math.round(p)} %`;

function groupBy<T>(xs: T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) m.set(key(x), [...(m.get(key(x)) ?? []), x]);
  return new Map([...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * The knee of one (series, implementation, batch) curve along KV length, under the two-regime model
 * latency = max(floor, bytes / peak): the floor is the curve's lowest latency, the peak its highest
 * achieved bandwidth, and the knee the KV length whose bytes take `floor` at `peak`. A curve that
 * never reaches BANDWIDTH_BOUND_PCT of the copy bandwidth is said not to be bandwidth-bound here.
 */
export function kneeSentence(curve: CharCell[]): Finding | null {
  const pts = [...curve].sort((a, b) => a.kv_len - b.kv_len);
  if (pts.length < 3) return null;
  const { series, implementation, batch_size } = pts[0];
  const floor = Math.min(...pts.map((p) => p.latency_ms));
  const peak = pts.reduce((a, b) => (b.achieved_tbs > a.achieved_tbs ? b : a));
  const head = `${implementation} on ${series} at batch ${batch_size}`;
  const base = { kind: "knee" as const, series, implementation, at: `batch ${batch_size}` };
  if (peak.pct_copy_bw < BANDWIDTH_BOUND_PCT) {
    return {
      ...base,
      sentence: `${head} is not bandwidth-bound up to ${tokens(pts.at(-1)!.kv_len)} tokens: it ` +
        `reaches at most ${pct(peak.pct_copy_bw)} of the copy bandwidth (at ${
          tokens(peak.kv_len)
        }), its latency rising from ${us(pts[0].latency_ms)} to ${us(pts.at(-1)!.latency_ms)}.`,
    };
  }
  const bytesPerToken = pts.at(-1)!.bytes / pts.at(-1)!.kv_len;
  const knee = (floor * 1e-3 * peak.achieved_tbs * 1e12) / bytesPerToken;
  if (knee <= pts[0].kv_len) {
    return {
      ...base,
      sentence: `${head} is bandwidth-bound over the whole range (${tokens(pts[0].kv_len)}–${
        tokens(pts.at(-1)!.kv_len)
      } tokens), reaching ${pct(peak.pct_copy_bw)} of the copy bandwidth at ${
        tokens(peak.kv_len)
      }.`,
    };
  }
  const flat = pts.filter((p) => p.kv_len <= knee);
  return {
    ...base,
    sentence: `${head} is launch/latency-bound below about ${tokens(knee)} tokens (latency ${
      us(Math.min(...flat.map((p) => p.latency_ms)))
    }–${us(Math.max(...flat.map((p) => p.latency_ms)))} from ${tokens(pts[0].kv_len)} to ${
      tokens(flat.at(-1)!.kv_len)
    }) and bandwidth-bound above it, reaching ${pct(peak.pct_copy_bw)} of the copy bandwidth at ${
      tokens(peak.kv_len)
    }.`,
  };
}

/**
 * Where two implementations swap places along one axis (`axis` of the cells; the other held at
 * `at`): the first point of each run in which one leads by more than TIE_RATIO, and the crossover
 * interpolated where log(latency ratio) crosses zero, in log axis units.
 */
export function crossovers(
  cells: CharCell[],
  axis: "kv_len" | "batch_size",
  at: string,
): Finding[] {
  const out: Finding[] = [];
  const impls = [...new Set(cells.map((c) => c.implementation))].sort();
  const series = cells[0]?.series ?? "";
  for (let i = 0; i < impls.length; i++) {
    for (let j = i + 1; j < impls.length; j++) {
      const [a, b] = [impls[i], impls[j]];
      const la = new Map(cells.filter((c) => c.implementation === a).map((c) => [c[axis], c]));
      const lb = new Map(cells.filter((c) => c.implementation === b).map((c) => [c[axis], c]));
      const xs = [...la.keys()].filter((x) => lb.has(x)).sort((p, q) => p - q);
      const r = xs.map((x) => Math.log(la.get(x)!.latency_ms / lb.get(x)!.latency_ms));
      const lead = r.map((v) => (Math.abs(v) < Math.log(TIE_RATIO) ? 0 : Math.sign(v)));
      let prev = -1;
      for (let k = 0; k < xs.length; k++) {
        if (lead[k] === 0) continue;
        if (prev >= 0 && lead[prev] !== lead[k]) {
          const [x0, x1] = [Math.log2(xs[prev]), Math.log2(xs[k])];
          const x = 2 ** (x0 + (x1 - x0) * (r[prev] / (r[prev] - r[k])));
          const [before, after] = lead[prev] < 0 ? [a, b] : [b, a];
          const unit = axis === "kv_len" ? " tokens" : "";
          const fmt = (v: number) => axis === "kv_len" ? tokens(v) : String(+v.toPrecision(3));
          out.push({
            kind: axis === "kv_len" ? "crossover_kv" : "crossover_batch",
            series,
            implementation: `${a} vs ${b}`,
            at,
            sentence: `On ${series} at ${at}, ${before} is faster up to ${
              fmt(xs[prev])
            }${unit} and ${after} from ${fmt(xs[k])}${unit} (crossover near ${
              axis === "kv_len" ? "" : "batch "
            }${fmt(x)}${unit}).`,
          });
        }
        prev = k;
      }
    }
  }
  return out;
}

/** How one implementation's latency grows with the batch at one KV length (the longest with 3+ batches). */
export function batchScaling(curve: CharCell[]): Finding | null {
  const byKv = groupBy(curve, (c) => String(c.kv_len));
  const kvs = [...byKv.keys()].map(Number).filter((k) => byKv.get(String(k))!.length >= 3);
  if (!kvs.length) return null;
  const kv = Math.max(...kvs);
  const pts = byKv.get(String(kv))!.sort((a, b) => a.batch_size - b.batch_size);
  const [lo, hi] = [pts[0], pts.at(-1)!];
  const growth = hi.latency_ms / lo.latency_ms;
  const batchGrowth = hi.batch_size / lo.batch_size;
  // Per sequence: faster when latency grows less than the batch, slower when more (a host-bound
  // baseline can do worse than serial: "falls 0.79×" read as a gain).
  const perSequence = batchGrowth / growth;
  const perSequenceText = perSequence >= 1
    ? `falls ${+perSequence.toFixed(2)}×`
    : `rises ${+(1 / perSequence).toFixed(2)}×`;
  return {
    kind: "batch_scaling",
    series: lo.series,
    implementation: lo.implementation,
    at: `KV ${tokens(kv)}`,
    sentence:
      `${lo.implementation} on ${lo.series} at ${tokens(kv)} tokens: from batch ${lo.batch_size} ` +
      `to ${hi.batch_size} (${batchGrowth}×) latency grows ${+growth.toFixed(2)}× (${
        us(lo.latency_ms)
      } → ${us(hi.latency_ms)}), so the time per sequence ${perSequenceText}; the copy-bandwidth ` +
      `share goes from ${pct(lo.pct_copy_bw)} to ${pct(hi.pct_copy_bw)}.`,
  };
}

/** Every finding of a run's characterization cells, series by series. */
export function findings(cells: CharCell[]): Finding[] {
  const out: Finding[] = [];
  for (const [, s] of groupBy(cells, (c) => c.series)) {
    for (const [, curve] of groupBy(s, (c) => `${c.implementation}\u0000${c.batch_size}`)) {
      const k = kneeSentence(curve);
      if (k) out.push(k);
    }
    for (const [, row] of groupBy(s, (c) => String(c.batch_size).padStart(6, "0"))) {
      out.push(...crossovers(row, "kv_len", `batch ${row[0].batch_size}`));
    }
    for (const [, col] of groupBy(s, (c) => String(c.kv_len).padStart(9, "0"))) {
      out.push(...crossovers(col, "batch_size", `KV ${tokens(col[0].kv_len)}`));
    }
    for (const [, curve] of groupBy(s, (c) => c.implementation)) {
      const b = batchScaling(curve);
      if (b) out.push(b);
    }
  }
  return out;
}
