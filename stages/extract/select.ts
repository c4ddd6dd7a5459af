/**
 * Picks a representative set of workloads per definition, deterministic for a seed. Candidates
 * are deduplicated shapes (flashinfer-bench's attention key: the axes plus average query and KV
 * length per request; for other families the leading dimension), each with its event count and
 * estimated time. Selection: the extremes of the leading axis, then systematic sampling over the
 * cumulative weight (a mix of frequency share and time share), then farthest-point filling in
 * log-axis space when heavy shapes absorbed several draws.
 */
import { rng } from "../../pipeline/lib/mod.ts";

/** One deduplicated shape. `key` holds the performance-relevant axes in sort order. */
export interface Candidate {
  key: number[];
  count: number;
  timeUs: number;
  /** Where a representative event lives: collect cell index and iteration. */
  cell: number;
  iter: number;
}

/** Returns indices (into `cands`) of at most `k` chosen candidates, in key order. */
export function selectRepresentative(
  cands: Candidate[],
  k: number,
  seed: number,
  timeWeight: number,
): number[] {
  const n = cands.length;
  if (n <= k) return cands.map((_, i) => i);
  const order = cands.map((_, i) => i).sort((a, b) => cmpKey(cands[a].key, cands[b].key) || a - b);
  const totalN = cands.reduce((s, c) => s + c.count, 0) || 1;
  const totalT = cands.reduce((s, c) => s + c.timeUs, 0) || 1;
  const w = order.map((i) =>
    (1 - timeWeight) * cands[i].count / totalN + timeWeight * cands[i].timeUs / totalT
  );
  const chosen = new Set<number>([order[0], order[n - 1]]);
  const rand = rng(seed);
  const u = rand();
  const draws = Math.max(0, k - 2);
  const total = w.reduce((a, b) => a + b, 0);
  let acc = 0, j = 0;
  for (let d = 0; d < draws; d++) {
    const target = ((d + u) / draws) * total;
    while (j < n - 1 && acc + w[j] < target) acc += w[j++];
    chosen.add(order[j]);
  }
  if (chosen.size < k) {
    // Farthest-point filling in normalized log space covers the tails the weights skipped.
    const dims = cands[0].key.length;
    const lo = new Array(dims).fill(Infinity), hi = new Array(dims).fill(-Infinity);
    const pt = cands.map((c) => c.key.map((v) => Math.log1p(Math.max(0, v))));
    for (const p of pt) {
      p.forEach((v, d) => ((lo[d] = Math.min(lo[d], v)), (hi[d] = Math.max(hi[d], v))));
    }
    const norm = pt.map((p) =>
      p.map((v, d) => (hi[d] > lo[d] ? (v - lo[d]) / (hi[d] - lo[d]) : 0))
    );
    const dist = new Float64Array(n).fill(Infinity);
    const update = (c: number) => {
      for (let i = 0; i < n; i++) {
        let s = 0;
        for (let d = 0; d < dims; d++) s += (norm[i][d] - norm[c][d]) ** 2;
        if (s < dist[i]) dist[i] = s;
      }
    };
    for (const c of chosen) update(c);
    while (chosen.size < k) {
      let best = -1;
      for (const i of order) if (!chosen.has(i) && (best < 0 || dist[i] > dist[best])) best = i;
      if (best < 0) break;
      chosen.add(best);
      update(best);
    }
  }
  return [...chosen].sort((a, b) => cmpKey(cands[a].key, cands[b].key) || a - b);
}

function cmpKey(a: number[], b: number[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Weighted quantiles (by count) of one key dimension. */
export function quantiles(cands: Candidate[], dim: number, qs: number[]): number[] {
  const s = cands.map((c) => [c.key[dim], c.count] as const).sort((a, b) => a[0] - b[0]);
  const total = s.reduce((a, b) => a + b[1], 0);
  return qs.map((q) => {
    let acc = 0;
    for (const [v, c] of s) {
      acc += c;
      if (acc >= q * total) return v;
    }
    return s.length ? s[s.length - 1][0] : NaN;
  });
}
