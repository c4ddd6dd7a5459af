/**
 * Cell-for-cell comparison of two stores' latest runs, for the shard and Slurm tests: the merged
 * store of N shards against one unsharded run.
 *
 * Pure stages must agree on ids, keys and output digests. A judging cell's outputs differ between
 * any two runs (build seconds, timings), and a downstream judging key holds its upstream judging
 * cell's output digest (verify's key holds compile's), so two unsharded runs differ there already:
 * judging cells must agree on ids, on their key documents with those digests set aside, and on
 * their outcomes.
 */
import { digestJson, type Store } from "../../engine/mod.ts";

const OUTCOME_FIELDS = ["solution", "definition", "workload", "outcome", "status"];

/** The differences between the latest runs of `stages` in two stores (empty: equal). */
export function compareStores(
  a: Store,
  b: Store,
  stages: string[],
  judging: string[],
): string[] {
  const diffs: string[] = [];
  const same = (what: string, x: unknown, y: unknown) => {
    if (digestJson(x) !== digestJson(y)) {
      diffs.push(
        `${what}: ${JSON.stringify(x).slice(0, 400)} != ${JSON.stringify(y).slice(0, 400)}`,
      );
    }
  };
  for (const stage of stages) {
    const ra = a.readRun(stage), rb = b.readRun(stage);
    if (!ra || !rb) {
      diffs.push(`${stage}: no recorded run in ${!ra ? a.root : b.root}`);
      continue;
    }
    const ids = (xs: Array<{ id: string }>) => xs.map((x) => x.id).sort();
    same(`${stage}: cells`, ids(ra.cells), ids(rb.cells));
    same(`${stage}: not runnable`, ids(ra.notRunnable), ids(rb.notRunnable));
    same(`${stage}: failed`, ids(ra.failed), ids(rb.failed));
    const cells = (s: Store) =>
      new Map(s.lastResults(stage)!.map((c) => [c.id, { ...c, record: s.get(stage, c.key)! }]));
    const ca = cells(a), cb = cells(b);
    for (const [id, x] of ca) {
      const y = cb.get(id);
      if (!y) continue; // reported with the ids
      if (!judging.includes(stage)) {
        same(`${stage}/${id}: key`, x.key, y.key);
        same(`${stage}/${id}: digest`, x.digest, y.digest);
        continue;
      }
      const doc = (r: typeof x) => {
        const d = r.record.record.keyDocument as { inputs: Record<string, string> };
        const inputs = Object.fromEntries(
          Object.entries(d.inputs).filter(([k]) => !judging.includes(k)),
        );
        return { ...d, inputs };
      };
      same(`${stage}/${id}: key document`, doc(x), doc(y));
      const outcome = (r: typeof x) =>
        Object.fromEntries(
          OUTCOME_FIELDS.map((k) => [k, (r.summary as Record<string, unknown> | null)?.[k]]),
        );
      same(`${stage}/${id}: outcome`, outcome(x), outcome(y));
    }
  }
  return diffs;
}
