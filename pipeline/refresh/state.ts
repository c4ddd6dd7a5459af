/**
 * The state of a night, as its snapshot records it in `night.json`: the definitions, workloads and
 * solutions the run saw, the status and latency of every (solution, workload) cell with the spread
 * the harness measured, the leaderboard, and which cells ran. The changelog compares two of these,
 * so a snapshot can be compared with the next one after the store has been collected.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type CellResult, digestJson, type Store } from "../engine/mod.ts";
import { parseCsv } from "../lib/mod.ts";
import { mergeFragments } from "../trace/mod.ts";

/** A workload, by definition and uuid. */
export interface WorkloadRef {
  definition: string;
  uuid: string;
}

/** A solution and what identifies its content. */
export interface SolutionRef {
  name: string;
  definition: string;
  author: string;
  language: string;
  /** Digest of the solution object: a changed source is a changed solution. */
  digest: string;
}

/** One judged (solution, workload) cell. */
export interface CellState {
  definition: string;
  solution: string;
  workload: string;
  /** The final status (time's, else verify's), or why the cell was not judged (`not_runnable_here`). */
  status: string;
  latency_ms: number | null;
  /**
   * The spread the harness measured for the candidate: (slowest - fastest round median) / median
   * over the interleaved rounds, or the interquartile range / median with one round.
   */
  spread: number | null;
  /** The key of the cell that produced the status (time's when timed): equal keys, equal results. */
  key: string | null;
}

/** One leaderboard row (Table C). */
export interface LeaderRow {
  author: string;
  /** null: listed without a rank (too little coverage to compare). */
  rank: number | null;
  win_pct: number | null;
}

/** What `night.json` holds. */
export interface NightState {
  format: "tracepipe/night-v1";
  snapshot: string;
  startedAt: string;
  finishedAt: string;
  definitions: string[];
  workloads: WorkloadRef[];
  solutions: SolutionRef[];
  cells: CellState[];
  leaderboard: LeaderRow[];
  /** Per stage, the ids of the cells that ran this night. */
  ran: Record<string, string[]>;
  /** The upstream revisions, by source name (commit, tree or sha256). */
  revisions: Record<string, string>;
}

const byKey = <T>(key: (t: T) => string) => (a: T, b: T) =>
  key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;

/** `definition/solution/workload` of a judging cell. */
export const cellId = (c: { definition: string; solution: string; workload: string }) =>
  `${c.definition}/${c.solution}/${c.workload}`;

/** The harness's spread for a timed cell (see `CellState.spread`), from its `timing.json`. */
export function timingSpread(timingJson: unknown): number | null {
  const cand = (timingJson as { details?: { candidate?: Record<string, unknown> } })?.details
    ?.candidate;
  const median = cand?.median_ms;
  if (typeof median !== "number" || !(median > 0)) return null;
  const rounds = (cand?.rounds as number[][] | undefined)?.filter((r) => r.length > 0) ?? [];
  if (rounds.length >= 2) {
    const medians = rounds.map((r) => {
      const s = [...r].sort((a, b) => a - b);
      const m = s.length >> 1;
      return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
    });
    return (Math.max(...medians) - Math.min(...medians)) / median;
  }
  return typeof cand?.iqr_ms === "number" ? cand.iqr_ms / median : null;
}

interface Summary {
  definition: string;
  solution: string;
  workload: string;
  outcome?: string;
  status?: string | null;
  latency_ms?: number | null;
}

/** Splits a judging cell id `definition/solution/workload` (a solution name may hold '/'). */
function splitCellId(id: string): { definition: string; solution: string; workload: string } {
  const parts = id.split("/");
  return {
    definition: parts[0],
    solution: parts.slice(1, -1).join("/"),
    workload: parts[parts.length - 1],
  };
}

/** The judging cells: verify's statuses, time's latencies and spreads, the not-runnable ones. */
function judgedCells(store: Store, prev: NightState | null): CellState[] {
  const prevByKey = new Map((prev?.cells ?? []).filter((c) => c.key).map((c) => [c.key!, c]));
  const timed = new Map<string, CellResult>();
  for (const c of store.lastResults("time") ?? []) timed.set(c.id, c);
  const out: CellState[] = [];
  for (const v of store.lastResults("verify") ?? []) {
    const s = v.summary as Summary;
    const t = timed.get(v.id);
    const ts = t?.summary as Summary | undefined;
    const status = ts?.status ?? s.status ?? s.outcome ?? "unknown";
    let spread: number | null = null;
    if (t && ts?.latency_ms != null) {
      // A cell of an unchanged key has the spread the previous night read: no need to read it again.
      const known = prevByKey.get(t.key);
      if (known) spread = known.spread;
      else if (existsSync(join(t.dir, "timing.json"))) {
        spread = timingSpread(JSON.parse(readFileSync(join(t.dir, "timing.json"), "utf8")));
      }
    }
    out.push({
      definition: s.definition,
      solution: s.solution,
      workload: s.workload,
      status,
      latency_ms: ts?.latency_ms ?? null,
      spread,
      key: t?.key ?? v.key,
    });
  }
  for (const n of store.readRun("verify")?.notRunnable ?? []) {
    out.push({
      ...splitCellId(n.id),
      status: "not_runnable_here",
      latency_ms: null,
      spread: null,
      key: null,
    });
  }
  return out.sort(byKey(cellId));
}

/** The solutions a corpus rejected (generate's `rejected/` folders): failures, not absences. */
function rejectedCells(generate: CellResult[]): CellResult[] {
  return generate
    .filter((c) => existsSync(join(c.dir, "rejected")))
    .map((c) => ({ ...c, dir: join(c.dir, "rejected") }));
}

/** Table C of a published report (`reports/tables/table_c_win_at_p_leaderboard.csv`). */
export function readLeaderboard(reportsDir: string): LeaderRow[] {
  const file = join(reportsDir, "tables", "table_c_win_at_p_leaderboard.csv");
  if (!existsSync(file)) return [];
  const num = (s: string | undefined) => (s === undefined || s === "" ? null : Number(s));
  return parseCsv(readFileSync(file, "utf8")).map((r) => ({
    author: r.author,
    rank: num(r.rank),
    win_pct: num(r.win_pct),
  }));
}

/**
 * Reads the state of the night the store's latest runs hold. `prev`: the previous night's state,
 * whose spreads are reused for cells of unchanged keys.
 */
export function collectNightState(opts: {
  store: Store;
  snapshot: string;
  startedAt: string;
  reportsDir: string;
  ran: Record<string, string[]>;
  revisions: Record<string, string>;
  prev: NightState | null;
}): NightState {
  const { store } = opts;
  const generate = store.lastResults("generate") ?? [];
  const objects = [
    ...(store.lastResults("definitions") ?? []),
    ...(store.lastResults("extract") ?? []),
    ...generate,
  ];
  const merged = mergeFragments(objects);
  const rejected = mergeFragments(rejectedCells(generate));
  const solutions = new Map(merged.solutions);
  for (const [n, s] of rejected.solutions) if (!solutions.has(n)) solutions.set(n, s);
  const cells = judgedCells(store, opts.prev);
  const judged = new Set(cells.map(cellId));
  for (const t of rejected.traces) {
    const c = { definition: t.definition, solution: t.solution ?? "", workload: t.workload.uuid };
    if (judged.has(cellId(c))) continue;
    judged.add(cellId(c));
    cells.push({
      ...c,
      status: t.evaluation?.status ?? "unknown",
      latency_ms: null,
      spread: null,
      key: null,
    });
  }
  return {
    format: "tracepipe/night-v1",
    snapshot: opts.snapshot,
    startedAt: opts.startedAt,
    finishedAt: new Date().toISOString(),
    definitions: [...merged.definitions.keys()].sort(),
    workloads: [...merged.workloads].flatMap(([definition, ws]) =>
      ws.map((w) => ({ definition, uuid: w.workload.uuid }))
    ).sort(byKey((w) => `${w.definition}/${w.uuid}`)),
    solutions: [...solutions.values()].map((s) => ({
      name: s.name,
      definition: s.definition,
      author: s.author,
      language: s.spec.language,
      digest: digestJson(s),
    })).sort(byKey((s) => `${s.definition}/${s.name}`)),
    cells: cells.sort(byKey(cellId)),
    leaderboard: readLeaderboard(opts.reportsDir),
    ran: opts.ran,
    revisions: opts.revisions,
  };
}
