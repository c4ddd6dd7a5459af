/** ae:full's comparison of a new GPU run with a shipped one, on fixture cells. */
import { assertEquals, assertMatch } from "../../tests/assert.ts";
import { type CellRow, compareCells, comparisonLines, parseCellsCsv } from "./compare.ts";

const cell = (solution: string, uuid: string, status: string, ms: number | null): CellRow => ({
  solution,
  definition: "d",
  uuid,
  status,
  latency_ms: ms,
});

const SHIPPED = [
  cell("a", "w1", "PASSED", 1.0),
  cell("a", "w2", "PASSED", 2.0),
  cell("b", "w1", "PASSED", 1.0),
  cell("b", "w2", "COMPILE_ERROR", null),
  cell("c", "w1", "PASSED", 1.0),
  cell("gone", "w1", "PASSED", 1.0),
];

Deno.test("cells within the spread pass; one outside is listed; a changed verdict fails the run", () => {
  const now = [
    cell("a", "w1", "PASSED", 1.02), // +2 %
    cell("a", "w2", "PASSED", 1.9), // -5 %
    cell("b", "w1", "PASSED", 1.5), // +50 %: outside
    cell("b", "w2", "COMPILE_ERROR", null), // same verdict, untimed
    cell("c", "w1", "INCORRECT_NUMERICAL", null), // verdict changed
    cell("new", "w1", "PASSED", 1.0),
  ];
  const c = compareCells(SHIPPED, now, 15, 0.5);
  assertEquals([c.compared, c.within, c.onlyShipped, c.onlyNow], [5, 3, 1, 1]);
  assertEquals(c.outside.map((d) => [d.solution, d.changePct]), [["b", 50]]);
  assertEquals(c.statusChanged.map((d) => [d.solution, d.shipped, d.now]), [
    ["c", "PASSED 1 ms", "INCORRECT_NUMERICAL"],
  ]);
  assertEquals(c.reproduced, false);
  const lines = comparisonLines(c, "h100-x");
  assertMatch(
    lines[0],
    /^compared 5 cells with h100-x: 3 within ±15 % or 0\.5 µs, 1 outside, 1 with another verdict; 1 only in h100-x, 1 only in this run/,
  );
  assertMatch(lines.join("\n"), /VERDICT {2}d w1 c: PASSED 1 ms -> INCORRECT_NUMERICAL/);
  assertMatch(lines.join("\n"), /OUTSIDE {2}d w1 b: PASSED 1 ms -> PASSED 1\.5 ms \(\+50 %\)/);
  assertMatch(lines.at(-1)!, /^NOT reproduced: verdicts changed/);
});

Deno.test("a run is reproduced while the cells outside the spread stay under the share allowed", () => {
  const now = SHIPPED.slice(0, 5).map((c) =>
    c.solution === "b" && c.uuid === "w1" ? { ...c, latency_ms: 2 } : c
  );
  assertEquals(compareCells(SHIPPED, now, 10, 0.5).reproduced, true); // 1 of 4 timed cells outside
  assertEquals(compareCells(SHIPPED, now, 10, 0.2).reproduced, false);
  assertMatch(comparisonLines(compareCells(SHIPPED, [], 10), "x").at(-1)!, /no cell in common/);
});

Deno.test("cells.csv round-trips through the parser, quotes and empty latencies included", () => {
  const csv =
    'solution,definition,uuid,status,latency_ms\n"a,b",d,w1,PASSED,0.5\nc,d,w2,COMPILE_ERROR,\n';
  assertEquals(parseCellsCsv(csv), [
    {
      solution: "a,b",
      definition: "d",
      uuid: "w1",
      status: "PASSED",
      latency_ms: 0.5,
      bound: null,
    },
    {
      solution: "c",
      definition: "d",
      uuid: "w2",
      status: "COMPILE_ERROR",
      latency_ms: null,
      bound: null,
    },
  ]);
  // The bound column (reports of the twelfth session on) is read where present.
  const withBound = "solution,definition,uuid,status,latency_ms,bound\na,d,w1,PASSED,0.5,host\n";
  assertEquals(parseCellsCsv(withBound)[0].bound, "host");
});

Deno.test("per kind of cell: a host-bound cell is held to the host-bound spread, a device-bound one to its own", () => {
  const cell = (uuid: string, ms: number, bound: string | null) => ({
    solution: "s",
    definition: "d",
    uuid,
    status: "PASSED",
    latency_ms: ms,
    bound,
  });
  const shipped = [cell("h", 1, "host"), cell("v", 1, "device"), cell("u", 1, null)];
  // Each 10 % slower: within the host-bound 15 %, outside the device-bound 2.6 %; a cell of unknown
  // kind is held to the larger.
  const now = [cell("h", 1.1, "host"), cell("v", 1.1, "device"), cell("u", 1.1, null)];
  const c = compareCells(shipped, now, { device: 2.6, host: 15 }, 0.5);
  assertEquals(c.outside.map((d) => [d.uuid, d.bound]), [["v", "device"]]);
  assertEquals(c.within, 2);
  const lines = comparisonLines(c, "run-a");
  assertMatch(lines[0], /2 within ±2\.6 % device-bound, ±15 % host-bound or 0\.5 µs, 1 outside/);
  assertMatch(lines[1], /OUTSIDE .* \(\+10 %, device-bound\)$/);
  // One number for every cell, as before.
  assertEquals(compareCells(shipped, now, 5, 0.5).outside.length, 3);
});

Deno.test("a change within the timer's resolution is within, whatever its percentage", () => {
  // 4 µs kernels: +0.4 µs is +10 %, beyond a 3 % spread but under the 0.5 µs floor; +0.8 µs is not
  const shipped = [cell("k", "w1", "PASSED", 0.004), cell("k", "w2", "PASSED", 0.004)];
  const now = [cell("k", "w1", "PASSED", 0.0044), cell("k", "w2", "PASSED", 0.0048)];
  const c = compareCells(shipped, now, 3, 0.1);
  assertEquals(c.floorUs, 0.5);
  assertEquals(c.outside.map((d) => [d.uuid, d.changePct]), [["w2", 20]]);
  assertMatch(comparisonLines(c, "x")[0], /1 within ±3 % or 0\.5 µs, 1 outside/);
  // without the floor both are outside
  assertEquals(compareCells(shipped, now, 3, 0.1, 0).outside.length, 2);
});
