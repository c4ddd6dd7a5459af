/**
 * The changelog between two nights: objects added and removed, status changes, leaderboard moves,
 * and latency changes only where they exceed the harness's measured spread (noise is not a
 * regression).
 */
import { assertEquals, assertMatch } from "../../tests/assert.ts";
import { diffNights, leaderboardMoves, perfChanges, renderChangelog } from "./changelog.ts";
import type { CellState, NightState } from "./state.ts";

const cell = (solution: string, workload: string, over: Partial<CellState> = {}): CellState => ({
  definition: "d",
  solution,
  workload,
  status: "PASSED",
  latency_ms: 1,
  spread: 0.01,
  key: `${solution}-${workload}`,
  ...over,
});

const sol = (name: string, digest = name) => ({
  name,
  definition: "d",
  author: "me",
  language: "python",
  digest,
});

const night = (snapshot: string, over: Partial<NightState> = {}): NightState => ({
  format: "tracepipe/night-v1",
  snapshot,
  startedAt: "",
  finishedAt: "",
  definitions: ["d"],
  workloads: [{ definition: "d", uuid: "w1" }],
  solutions: [sol("a")],
  cells: [cell("a", "w1")],
  leaderboard: [{ author: "me", rank: 1, win_pct: 100 }],
  ran: {},
  revisions: { up: "c1" },
  ...over,
});

Deno.test("an unchanged night has an empty changelog that says so", () => {
  const c = diffNights(night("n1"), night("n2"), 0.03);
  assertEquals(c.changed, false);
  assertEquals(c.previous, "n1");
  assertMatch(renderChangelog(c), /Nothing changed\./);
  assertMatch(renderChangelog(c), /Cells run this night: none/);
});

Deno.test("objects added, removed and changed; cells judged first and no longer; statuses", () => {
  const prev = night("n1", {
    definitions: ["d", "old"],
    solutions: [sol("a"), sol("gone"), sol("edited", "v1")],
    cells: [cell("a", "w1"), cell("gone", "w1"), cell("edited", "w1")],
  });
  const cur = night("n2", {
    definitions: ["d", "new"],
    workloads: [{ definition: "d", uuid: "w1" }, { definition: "d", uuid: "w2" }],
    solutions: [sol("a"), sol("b"), sol("edited", "v2")],
    cells: [
      cell("a", "w1"),
      cell("a", "w2"),
      cell("b", "w1", { status: "INCORRECT_NUMERICAL", latency_ms: null }),
      cell("edited", "w1", { status: "RUNTIME_ERROR", latency_ms: null, key: "k2" }),
    ],
    revisions: { up: "c2" },
    ran: { verify: ["x", "y"] },
  });
  const c = diffNights(prev, cur, 0.03);
  assertEquals(c.changed, true);
  assertEquals(c.revisions, [{ name: "up", from: "c1", to: "c2" }]);
  assertEquals(c.definitions, { added: ["new"], removed: ["old"] });
  assertEquals(c.workloads, { added: [{ definition: "d", uuid: "w2" }], removed: [] });
  assertEquals(c.solutions.added.map((s) => s.name), ["b"]);
  assertEquals(c.solutions.removed.map((s) => s.name), ["gone"]);
  assertEquals(c.solutions.changed.map((s) => s.name), ["edited"]);
  assertEquals(c.cells.added.map((x) => `${x.solution}/${x.workload}`), ["a/w2", "b/w1"]);
  assertEquals(c.cells.removed.map((x) => x.solution), ["gone"]);
  assertEquals(c.statusChanges, [
    { definition: "d", solution: "edited", workload: "w1", from: "PASSED", to: "RUNTIME_ERROR" },
  ]);
  assertEquals(c.ran, { verify: 2 });
  const md = renderChangelog(c);
  assertMatch(md, /- added b \(d, me, python\)/);
  assertMatch(md, /- d\/edited\/w1: PASSED → RUNTIME_ERROR/);
  assertMatch(md, /- up: c1 → c2/);
});

Deno.test("latency: a change within the measured spread or the floor is noise; beyond it, reported", () => {
  const before = [
    cell("a", "w1", { latency_ms: 1.0, spread: 0.10, key: "1" }),
    cell("b", "w1", { latency_ms: 1.0, spread: 0.01, key: "2" }),
    cell("c", "w1", { latency_ms: 1.0, spread: 0.01, key: "3" }),
    cell("d", "w1", { latency_ms: 1.0, spread: 0.5, key: "same" }),
  ];
  const after = [
    cell("a", "w1", { latency_ms: 1.08, spread: 0.02, key: "1b" }), // 8 % < a's 10 % spread
    cell("b", "w1", { latency_ms: 1.02, spread: 0.01, key: "2b" }), // 2 % < the 3 % floor
    cell("c", "w1", { latency_ms: 0.8, spread: 0.01, key: "3b" }), // 20 % faster: real
    cell("d", "w1", { latency_ms: 9, spread: 0.5, key: "same" }), // same key: same measurement
  ];
  const p = perfChanges(before, after, 0.03);
  assertEquals(p.map((x) => x.solution), ["c"]);
  assertEquals(Math.round(p[0].change * 100), -20);
  assertEquals(p[0].threshold, 0.03);
  // With no floor, the spread alone decides.
  assertEquals(perfChanges(before, after, 0).map((x) => x.solution), ["b", "c"]);
  const md = renderChangelog(
    diffNights(night("n1", { cells: before }), night("n2", { cells: after }), 0.03),
  );
  assertMatch(md, /d\/c\/w1: 1\.000 ms → 800\.00 µs \(-20\.0 %; faster, noise up to ±3\.0 %\)/);
});

Deno.test("leaderboard: rank moves, entries and exits", () => {
  const moves = leaderboardMoves(
    [{ author: "a", rank: 1, win_pct: 90 }, { author: "b", rank: 2, win_pct: 50 }, {
      author: "gone",
      rank: 3,
      win_pct: 1,
    }],
    [{ author: "b", rank: 1, win_pct: 95 }, { author: "a", rank: 2, win_pct: 80 }, {
      author: "new",
      rank: null,
      win_pct: 10,
    }],
  );
  assertEquals(moves.map((m) => [m.author, m.from, m.to, m.listed]), [
    ["b", 2, 1, "both"],
    ["a", 1, 2, "both"],
    ["gone", 3, null, "left"],
    ["new", null, null, "entered"],
  ]);
});

Deno.test("the first night: everything is new, said once", () => {
  const c = diffNights(null, night("n1"), 0.03);
  assertEquals([c.previous, c.changed, c.definitions.added, c.solutions.added.length], [
    null,
    true,
    ["d"],
    1,
  ]);
  assertMatch(renderChangelog(c), /First snapshot: everything below is new\./);
  assertMatch(renderChangelog(c), /me entered at #1/);
});
