/**
 * What changed between two nights: upstream revisions, definitions, workloads and solutions added
 * or removed, cells judged for the first time or no longer, status changes per (solution,
 * workload), leaderboard moves, and latency changes larger than the noise. A latency change counts
 * only when it exceeds the spread the harness measured on both nights (the interleaved rounds of
 * each cell) and a floor (`minRelChange`), so run-to-run noise is never reported as a regression.
 * The Markdown form is written to be the body of a pull request or a notification.
 */
import {
  cellId,
  type CellState,
  type NightState,
  type SolutionRef,
  type WorkloadRef,
} from "./state.ts";

/** A cell's status that changed. */
export interface StatusChange {
  definition: string;
  solution: string;
  workload: string;
  from: string;
  to: string;
}

/** A latency change beyond the noise. */
export interface PerfChange {
  definition: string;
  solution: string;
  workload: string;
  from_ms: number;
  to_ms: number;
  /** to / from - 1 (negative: faster). */
  change: number;
  /** The largest change the noise explains: max(both spreads, minRelChange). */
  threshold: number;
}

/** A leaderboard move: rank `from` → `to` (null: not listed, or listed without a rank). */
export interface LeaderMove {
  author: string;
  from: number | null;
  to: number | null;
  listed: "both" | "entered" | "left";
}

/** The changelog of one night (`changelog.json`). */
export interface Changelog {
  format: "tracepipe/changelog-v1";
  snapshot: string;
  previous: string | null;
  /** Whether anything below is non-empty. */
  changed: boolean;
  revisions: Array<{ name: string; from: string | null; to: string | null }>;
  definitions: { added: string[]; removed: string[] };
  workloads: { added: WorkloadRef[]; removed: WorkloadRef[] };
  solutions: { added: SolutionRef[]; removed: SolutionRef[]; changed: SolutionRef[] };
  cells: { added: CellState[]; removed: CellState[] };
  statusChanges: StatusChange[];
  leaderboard: LeaderMove[];
  performance: PerfChange[];
  /** How many cells each stage ran this night. */
  ran: Record<string, number>;
}

const EMPTY_NIGHT: Omit<NightState, "snapshot" | "startedAt" | "finishedAt" | "ran"> = {
  format: "tracepipe/night-v1",
  definitions: [],
  workloads: [],
  solutions: [],
  cells: [],
  leaderboard: [],
  revisions: {},
};

/** Elements of `b` whose key `a` lacks. */
function minus<T>(a: T[], b: T[], key: (t: T) => string): T[] {
  const ks = new Set(a.map(key));
  return b.filter((t) => !ks.has(key(t)));
}

const wKey = (w: WorkloadRef) => `${w.definition}/${w.uuid}`;
const sKey = (s: SolutionRef) => `${s.definition}/${s.name}`;

/** Latency changes of cells present both nights, beyond max(spreads, `minRelChange`). */
export function perfChanges(
  before: CellState[],
  after: CellState[],
  minRelChange: number,
): PerfChange[] {
  const old = new Map(before.map((c) => [cellId(c), c]));
  const out: PerfChange[] = [];
  for (const c of after) {
    const o = old.get(cellId(c));
    if (!o || o.latency_ms === null || c.latency_ms === null || !(o.latency_ms > 0)) continue;
    if (o.key !== null && o.key === c.key) continue; // the same cell: the same measurement
    const change = c.latency_ms / o.latency_ms - 1;
    const threshold = Math.max(o.spread ?? 0, c.spread ?? 0, minRelChange);
    if (Math.abs(change) > threshold) {
      out.push({
        definition: c.definition,
        solution: c.solution,
        workload: c.workload,
        from_ms: o.latency_ms,
        to_ms: c.latency_ms,
        change,
        threshold,
      });
    }
  }
  return out;
}

/** Rank moves, entries and exits of the leaderboard. */
export function leaderboardMoves(
  before: NightState["leaderboard"],
  after: NightState["leaderboard"],
) {
  const old = new Map(before.map((r) => [r.author, r]));
  const now = new Map(after.map((r) => [r.author, r]));
  const out: LeaderMove[] = [];
  for (const [author, r] of now) {
    const o = old.get(author);
    if (!o) out.push({ author, from: null, to: r.rank, listed: "entered" });
    else if (o.rank !== r.rank) out.push({ author, from: o.rank, to: r.rank, listed: "both" });
  }
  for (const [author, o] of old) {
    if (!now.has(author)) out.push({ author, from: o.rank, to: null, listed: "left" });
  }
  return out.sort((a, b) =>
    (a.to ?? Infinity) - (b.to ?? Infinity) || (a.author < b.author ? -1 : 1)
  );
}

/** The changelog of `cur` against `prev` (null: the first night, where everything is new). */
export function diffNights(
  prev: NightState | null,
  cur: NightState,
  minRelChange: number,
): Changelog {
  const p = prev ?? { ...EMPTY_NIGHT, snapshot: "", startedAt: "", finishedAt: "", ran: {} };
  const oldCells = new Map(p.cells.map((c) => [cellId(c), c]));
  const statusChanges: StatusChange[] = [];
  for (const c of cur.cells) {
    const o = oldCells.get(cellId(c));
    if (o && o.status !== c.status) {
      const { definition, solution, workload } = c;
      statusChanges.push({ definition, solution, workload, from: o.status, to: c.status });
    }
  }
  const oldSol = new Map(p.solutions.map((s) => [sKey(s), s]));
  const names = [...new Set([...Object.keys(p.revisions), ...Object.keys(cur.revisions)])].sort();
  const log: Omit<Changelog, "changed"> = {
    format: "tracepipe/changelog-v1",
    snapshot: cur.snapshot,
    previous: prev?.snapshot ?? null,
    revisions: names.filter((n) => p.revisions[n] !== cur.revisions[n]).map((name) => ({
      name,
      from: p.revisions[name] ?? null,
      to: cur.revisions[name] ?? null,
    })),
    definitions: {
      added: minus(p.definitions, cur.definitions, String),
      removed: minus(cur.definitions, p.definitions, String),
    },
    workloads: {
      added: minus(p.workloads, cur.workloads, wKey),
      removed: minus(cur.workloads, p.workloads, wKey),
    },
    solutions: {
      added: minus(p.solutions, cur.solutions, sKey),
      removed: minus(cur.solutions, p.solutions, sKey),
      changed: cur.solutions.filter((s) => {
        const o = oldSol.get(sKey(s));
        return o !== undefined && o.digest !== s.digest;
      }),
    },
    cells: { added: minus(p.cells, cur.cells, cellId), removed: minus(cur.cells, p.cells, cellId) },
    statusChanges,
    leaderboard: leaderboardMoves(p.leaderboard, cur.leaderboard),
    performance: perfChanges(p.cells, cur.cells, minRelChange),
    ran: Object.fromEntries(Object.entries(cur.ran).map(([s, ids]) => [s, ids.length])),
  };
  const changed = log.revisions.length > 0 || log.definitions.added.length > 0 ||
    log.definitions.removed.length > 0 || log.workloads.added.length > 0 ||
    log.workloads.removed.length > 0 || log.solutions.added.length > 0 ||
    log.solutions.removed.length > 0 || log.solutions.changed.length > 0 ||
    log.cells.added.length > 0 || log.cells.removed.length > 0 || statusChanges.length > 0 ||
    log.leaderboard.length > 0 || log.performance.length > 0;
  return { ...log, changed };
}

/** Lines of one list, at most `max` of them (the JSON file has them all). */
function capped<T>(items: T[], line: (t: T) => string, max = 50): string[] {
  const out = items.slice(0, max).map((t) => `- ${line(t)}`);
  if (items.length > max) out.push(`- … ${items.length - max} more (changelog.json)`);
  return out;
}

const pct = (x: number) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)} %`;
const ms = (x: number) => (x >= 1 ? `${x.toFixed(3)} ms` : `${(x * 1000).toFixed(2)} µs`);
const rank = (r: number | null) => (r === null ? "unranked" : `#${r}`);

/** The changelog as Markdown: the body of a pull request or a notification. */
export function renderChangelog(c: Changelog): string {
  const out = [
    `# tracepipe nightly refresh: ${c.snapshot}`,
    "",
    c.previous ? `Compared with ${c.previous}.` : "First snapshot: everything below is new.",
    "",
  ];
  if (!c.changed) out.push("Nothing changed.", "");
  const section = (title: string, lines: string[]) => {
    if (lines.length) out.push(`## ${title}`, "", ...lines, "");
  };
  section(
    "Upstream revisions",
    capped(c.revisions, (r) => `${r.name}: ${r.from ?? "(new)"} → ${r.to ?? "(removed)"}`),
  );
  section("Definitions", [
    ...capped(c.definitions.added, (d) => `added ${d}`),
    ...capped(c.definitions.removed, (d) => `removed ${d}`),
  ]);
  section("Workloads", [
    ...capped(c.workloads.added, (w) => `added ${w.definition} ${w.uuid}`),
    ...capped(c.workloads.removed, (w) => `removed ${w.definition} ${w.uuid}`),
  ]);
  const sol = (s: SolutionRef) => `${s.name} (${s.definition}, ${s.author}, ${s.language})`;
  section("Solutions", [
    ...capped(c.solutions.added, (s) => `added ${sol(s)}`),
    ...capped(c.solutions.removed, (s) => `removed ${sol(s)}`),
    ...capped(c.solutions.changed, (s) => `changed ${sol(s)}`),
  ]);
  section(
    "Cells judged for the first time",
    capped(c.cells.added, (x) => `${cellId(x)}: ${x.status}`),
  );
  section(
    "Cells no longer judged",
    capped(c.cells.removed, (x) => `${cellId(x)} (was ${x.status})`),
  );
  section("Status changes", capped(c.statusChanges, (s) => `${cellId(s)}: ${s.from} → ${s.to}`));
  section(
    "Leaderboard",
    capped(
      c.leaderboard,
      (m) =>
        m.listed === "entered"
          ? `${m.author} entered at ${rank(m.to)}`
          : m.listed === "left"
          ? `${m.author} left (was ${rank(m.from)})`
          : `${m.author}: ${rank(m.from)} → ${rank(m.to)}`,
    ),
  );
  section(
    "Performance (beyond the measured noise)",
    capped(
      c.performance,
      (x) =>
        `${cellId(x)}: ${ms(x.from_ms)} → ${ms(x.to_ms)} (${pct(x.change)}; ${
          x.change < 0 ? "faster" : "slower"
        }, noise up to ±${(x.threshold * 100).toFixed(1)} %)`,
    ),
  );
  const ran = Object.entries(c.ran).map(([s, n]) => `${s} ${n}`).join(", ");
  out.push(`Cells run this night: ${ran || "none (everything was up to date)"}.`, "");
  return out.join("\n");
}
