/**
 * The full profile's comparison (`deno task ae:full`): each cell a new GPU run judged against the
 * same cell of a shipped run. A cell's median is within the measured run-to-run spread or it is
 * listed; a cell whose verdict changed is always listed; cells only one run has are counted apart
 * (new code may change workloads or solutions, and then there is nothing to compare). Where the
 * spread was measured per kind of cell, a host-bound cell (its time the host's submission) is held
 * to the host-bound spread and a device-bound one to the device-bound spread: across two machines
 * a Python-heavy call moved 2x with the host while device-bound cells agreed within 2.3 %
 * (docs/BENCHMARKS.md, twelfth session). A change no larger than the timer's resolution is within
 * whatever its percentage: across two leases, 4-10 µs kernels moved 4-10 % by a few tenths of a
 * microsecond (fifteenth session), below what CUDA events resolve (about 0.5 µs).
 */
import { parseCsvRows } from "../lib/mod.ts";

/** One cell as cells.csv holds it. */
export interface CellRow {
  solution: string;
  definition: string;
  uuid: string;
  status: string;
  latency_ms: number | null;
  /** What bounded its time ("host" or "device"), where the run recorded it. */
  bound?: string | null;
}

/** The spread a cell is held to: one for every cell, or one per kind of cell. */
export type Tolerance = number | { device: number; host: number };

/** The tolerance of one cell: its kind's where both are known, else the larger. */
function toleranceOf(t: Tolerance, bound: string | null | undefined): number {
  if (typeof t === "number") return t;
  return bound === "host" ? t.host : bound === "device" ? t.device : Math.max(t.host, t.device);
}

/**
 * The change in microseconds below which a cell is within, whatever its percentage: the resolution
 * of CUDA events (about half a microsecond, per the CUDA runtime's cudaEventElapsedTime).
 */
export const TIMER_FLOOR_US = 0.5;

/** A tolerance in words: "±15 %" or "±2.6 % device-bound, ±15 % host-bound". */
export function toleranceText(t: Tolerance): string {
  return typeof t === "number" ? `±${t} %` : `±${t.device} % device-bound, ±${t.host} % host-bound`;
}

/** A cell outside the spread, or whose verdict changed. */
export interface CellDiff {
  solution: string;
  definition: string;
  uuid: string;
  shipped: string;
  now: string;
  /** Relative change of the median, in % (null when either did not pass). */
  changePct: number | null;
  /** What bounded the cell in this run (else in the shipped one), where recorded. */
  bound?: string | null;
}

/** The comparison's outcome. */
export interface Comparison {
  tolerance: Tolerance;
  /** A change of at most this many microseconds is within, whatever its percentage. */
  floorUs: number;
  compared: number;
  within: number;
  outside: CellDiff[];
  statusChanged: CellDiff[];
  onlyShipped: number;
  onlyNow: number;
  /** The share of compared timed cells outside the tolerance that still counts as reproduced. */
  maxOutsideShare: number;
  reproduced: boolean;
}

const key = (c: CellRow) => `${c.solution}\u0000${c.definition}\u0000${c.uuid}`;
const timed = (c: CellRow) => c.status === "PASSED" && c.latency_ms !== null && c.latency_ms > 0;
const show = (c: CellRow) =>
  timed(c) ? `${c.status} ${Number(c.latency_ms!.toPrecision(4))} ms` : c.status;

/**
 * Compares `now` with `shipped`. A timed cell is within when |now/shipped − 1| ≤ tolerance or
 * |now − shipped| ≤ `floorUs`; the run is reproduced when no verdict changed and at most
 * `maxOutsideShare` of the timed cells are outside.
 */
export function compareCells(
  shipped: CellRow[],
  now: CellRow[],
  tolerance: Tolerance,
  maxOutsideShare = 0.1,
  floorUs = TIMER_FLOOR_US,
): Comparison {
  const before = new Map(shipped.map((c) => [key(c), c]));
  const seen = new Set<string>();
  const outside: CellDiff[] = [];
  const statusChanged: CellDiff[] = [];
  let compared = 0, within = 0, timedPairs = 0;
  for (const c of now) {
    const b = before.get(key(c));
    if (!b) continue;
    seen.add(key(c));
    compared++;
    const bound = c.bound || b.bound || null;
    const diff = (changePct: number | null): CellDiff => ({
      solution: c.solution,
      definition: c.definition,
      uuid: c.uuid,
      shipped: show(b),
      now: show(c),
      changePct,
      ...(bound ? { bound } : {}),
    });
    if ((b.status === "PASSED") !== (c.status === "PASSED")) {
      statusChanged.push(diff(null));
      continue;
    }
    if (!timed(b) || !timed(c)) {
      within++;
      continue;
    }
    timedPairs++;
    const change = 100 * (c.latency_ms! / b.latency_ms! - 1);
    const changeUs = 1000 * Math.abs(c.latency_ms! - b.latency_ms!);
    if (Math.abs(change) <= toleranceOf(tolerance, bound) + 1e-9 || changeUs <= floorUs + 1e-9) {
      within++;
    } else outside.push(diff(Number(change.toFixed(2))));
  }
  outside.sort((a, b) => Math.abs(b.changePct!) - Math.abs(a.changePct!));
  const onlyShipped = shipped.filter((c) => !seen.has(key(c))).length;
  const share = timedPairs ? outside.length / timedPairs : 0;
  return {
    tolerance,
    floorUs,
    compared,
    within,
    outside,
    statusChanged,
    onlyShipped,
    onlyNow: now.length - compared,
    maxOutsideShare,
    reproduced: compared > 0 && statusChanged.length === 0 && share <= maxOutsideShare,
  };
}

/** The comparison in words, one cell a line. */
export function comparisonLines(c: Comparison, shippedId: string): string[] {
  const out = [
    `compared ${c.compared} cells with ${shippedId}: ${c.within} within ${
      toleranceText(c.tolerance)
    }${c.floorUs > 0 ? ` or ${c.floorUs} µs` : ""}, ` +
    `${c.outside.length} outside, ${c.statusChanged.length} with another verdict; ` +
    `${c.onlyShipped} only in ${shippedId}, ${c.onlyNow} only in this run (not compared)`,
  ];
  for (const d of c.statusChanged) {
    out.push(`  VERDICT  ${d.definition} ${d.uuid} ${d.solution}: ${d.shipped} -> ${d.now}`);
  }
  for (const d of c.outside) {
    out.push(
      `  OUTSIDE  ${d.definition} ${d.uuid} ${d.solution}: ${d.shipped} -> ${d.now} (${
        d.changePct! > 0 ? "+" : ""
      }${d.changePct} %${d.bound ? `, ${d.bound}-bound` : ""})`,
    );
  }
  out.push(
    c.reproduced
      ? `reproduced: no verdict changed and at most ${
        Math.round(c.maxOutsideShare * 100)
      } % of the timed cells lie outside the spread`
      : `NOT reproduced: ${
        c.compared === 0
          ? "no cell in common"
          : c.statusChanged.length
          ? "verdicts changed"
          : `more than ${Math.round(c.maxOutsideShare * 100)} % of the timed cells lie outside`
      }`,
  );
  return out;
}

/** Parses cells.csv (RFC 4180, as the report writes it). */
export function parseCellsCsv(text: string): CellRow[] {
  const [head, ...body] = parseCsvRows(text);
  const at = (name: string) => {
    const i = (head ?? []).indexOf(name);
    if (i < 0) throw new Error(`cells.csv: no column "${name}"`);
    return i;
  };
  const [s, d, u, st, l] = ["solution", "definition", "uuid", "status", "latency_ms"].map(at);
  // Optional: reports of before it have no such column.
  const bd = (head ?? []).indexOf("bound");
  return body.filter((r) => r.length > 1).map((r) => ({
    solution: r[s],
    definition: r[d],
    uuid: r[u],
    status: r[st],
    latency_ms: r[l] === "" ? null : Number(r[l]),
    bound: bd >= 0 && r[bd] ? r[bd] : null,
  }));
}
