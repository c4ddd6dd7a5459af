/**
 * Table B on the report's page is the paper's grid: one row per panel × language × author, a few p
 * columns, fast_p undefined (blank) where no workload has a baseline latency; the long form stays
 * in the CSV.
 */
import { assertEquals } from "../../tests/assert.ts";
import { fastPGrid } from "./analysis.ts";

const long = (author: string, n: number, fast: (p: number) => number | null) =>
  [0, 0.1, 0.5, 0.8, 1, 1.2, 1.5, 1.9].map((p) => ({
    panel: "gemm",
    language: "cuda",
    author,
    p,
    n_workloads: n,
    n_without_baseline: 0,
    n_fast: 0,
    fast_p: fast(p),
  }));

Deno.test("Table B grid: one row per author, the grid's p columns only, rounded; none without a baseline", () => {
  const grid = fastPGrid([
    ...long("a", 3, (p) => p < 1 ? 2 / 3 : 0),
    ...long("b", 0, () => null),
  ]);
  assertEquals(grid.columns, [
    "panel",
    "language",
    "author",
    "n",
    "fast_0.0",
    "fast_0.5",
    "fast_0.8",
    "fast_1.0",
    "fast_1.2",
    "fast_1.5",
  ]);
  assertEquals(grid.rows.length, 2);
  const a = grid.rows.find((r) => r.author === "a")!;
  assertEquals([a["fast_0.0"], a["fast_0.8"], a["fast_1.0"]], [0.667, 0.667, 0]);
  const b = grid.rows.find((r) => r.author === "b")!;
  assertEquals(b["fast_0.5"], null);
});
