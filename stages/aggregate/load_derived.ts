/**
 * The load steps that derive rows from what load.ts and load_traces.ts read: the solutions generate
 * rejected (one COMPILE_ERROR run on every judged workload of their definition), the first error of
 * every COMPILE_ERROR log (compile_errors.ts), the baseline latencies the time stage measured
 * beside each candidate (timing.json), which stand in where the baseline has no trace of its own,
 * and, from the same file, what bounds each timed cell (host or device) and whether the tail check
 * charged it.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { DuckDBConnection } from "@duckdb/node-api";
import type { Diagnostic } from "../../pipeline/engine/mod.ts";
import { parseJsonOrDiagnose, type Solution } from "../../pipeline/trace/mod.ts";
import { classifyCompileError } from "./compile_errors.ts";
import { all, appendRows } from "./db.ts";
import { displayName, type Fragment } from "./fragment.ts";

const TRACE_COLS = "file, line, definition, solution, uuid, status, hardware, timestamp, log, " +
  "max_relative_error, max_absolute_error, latency_ms, reference_latency_ms, speedup_factor, loaded_by";

/**
 * A rejected solution would have failed every workload the run judged, as a solution that does not
 * build does in verify: its one trace (on the definition's first workload, so that it is a valid
 * FlashInfer trace) becomes a COMPILE_ERROR run on each judged (definition, workload) group. A
 * solution of a definition nobody was judged on is left out, as an unselected solution is.
 * Returns the number of rejected solutions counted.
 */
export async function expandRejectedTraces(conn: DuckDBConnection): Promise<number> {
  const rejected = `SELECT file FROM trace_files WHERE origin = 'rejected'`;
  await conn.run(`
    CREATE TEMP TABLE rejected_traces AS
      SELECT DISTINCT ON (solution) * FROM traces WHERE file IN (${rejected})
      ORDER BY solution, file, line;
    DELETE FROM traces WHERE file IN (${rejected});
    INSERT INTO traces (${TRACE_COLS})
      SELECT r.file, r.line, r.definition, r.solution, g.uuid, r.status, r.hardware, r.timestamp, r.log,
        r.max_relative_error, r.max_absolute_error, r.latency_ms, r.reference_latency_ms,
        r.speedup_factor, r.loaded_by
      FROM rejected_traces r JOIN (SELECT DISTINCT definition, uuid FROM traces) g USING (definition);`);
  const n = Number(
    (await all(
      conn,
      "SELECT count(DISTINCT solution) AS n FROM traces WHERE file IN (" + rejected + ")",
    ))[0].n,
  );
  await conn.run("DROP TABLE rejected_traces");
  return n;
}

/** Files every distinct COMPILE_ERROR log under its first error (compile_error_class). */
export async function classifyCompileErrors(conn: DuckDBConnection): Promise<void> {
  const logs = await all(conn, "SELECT DISTINCT log FROM traces WHERE status = 'COMPILE_ERROR'");
  await appendRows(
    conn,
    "compile_error_class",
    logs.map((r) => {
      const c = classifyCompileError(r.log as string | null);
      return [r.log ?? null, c.firstError, c.category];
    }),
  );
}

/** What the time stage's summary says of a cell (stages/time/stage.ts). */
interface TimeSummary {
  definition?: unknown;
  workload?: unknown;
  baseline?: unknown;
}

/** The part of a time cell's timing.json (the harness's result) read here. */
interface Timing {
  solution?: unknown;
  workload?: unknown;
  evaluation?: { performance?: { latency_ms?: unknown } | null } | null;
  details?: {
    rigor?: unknown;
    baseline?: { median_ms?: unknown } | null;
    speedup_vs_baseline?: unknown;
    candidate?: { median_ms?: unknown } | null;
    gate?: {
      candidate?: {
        host_submit_median_ms?: unknown;
        opened_by_host?: unknown;
        hold_expired?: unknown;
      } | null;
    } | null;
    clocks?: { before?: ClockReading | null; after?: ClockReading | null } | null;
  } | null;
}

/** A clock reading the harness logs around each cell's measurement (th_env.py, nvidia-smi's fields). */
interface ClockReading {
  clocks_sm?: unknown;
  clocks_event_reasons_seen?: unknown;
}

/**
 * NVML's clock event reasons that slow the GPU down: software power cap (0x4), hardware slowdown
 * (0x8), software and hardware thermal slowdown (0x20, 0x40), power brake (0x80). Idle (0x1),
 * application clocks (0x2), sync boost (0x10) and display clocks (0x100) are not throttling.
 */
const THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80;

/**
 * A timed cell's clocks: the lower of the SM clocks logged before and after its measurement, and
 * whether a throttling reason was active at any reading between them (the reasons are OR-ed over the
 * cell). Nulls where the harness logged no clocks (a CPU run, no nvidia-smi).
 */
export function cellClocks(t: Timing): { sm_mhz: number | null; throttled: boolean | null } {
  const c = t.details?.clocks;
  const mhz = [c?.before?.clocks_sm, c?.after?.clocks_sm].map((v) => Number(v))
    .filter((v) => Number.isFinite(v) && v > 0);
  const seen = [c?.after?.clocks_event_reasons_seen, c?.before?.clocks_event_reasons_seen]
    .find((v) => typeof v === "string" && /^0x[0-9a-f]+$/i.test(v)) as string | undefined;
  return {
    sm_mhz: mhz.length ? Math.min(...mhz) : null,
    // The mask's bits are all in the low word: parse the last 8 hex digits only (no bigint needed).
    throttled: seen === undefined ? null : (parseInt(seen.slice(-8), 16) & THROTTLE_MASK) !== 0,
  };
}

/** The rigor tag of a cell the tail check charged for work left running after it returned. */
const TAIL_CHARGE = "async_work_after_return";

/** Without the gate's counts, a host submission at least this share of the median makes a cell host-bound. */
const HOST_BOUND_SHARE = 0.8;

/**
 * What bounds a timed cell's measurement. The harness's gate holds the GPU for a while (`hold_us`)
 * as each timed call is submitted: where the host finished submitting first (`opened_by_host`), the
 * sample timed the device alone; where the hold ran out first (`hold_expired`), the device waited on
 * the host, and the sample carries the host's speed. The cell is "host" where the hold ran out in
 * most of its samples, "device" otherwise. Run to run, this split tells the cells that move with the
 * host apart (h100-2026-12-07 against -06: device-bound 194 cells, p90 4.3 %; host-bound 73, p90
 * 96 %), where a host submission of 0.8 of the median (the rule before, and still the one for a
 * timing.json without the gate's counts) called 232 cells host-bound that the gate had timed on the
 * device alone. null where the harness recorded neither (a CPU run, a timing.json of before the gate).
 */
export function cellBound(t: Timing): "host" | "device" | null {
  const gate = t.details?.gate?.candidate;
  const opened = gate?.opened_by_host, expired = gate?.hold_expired;
  if (count(opened) && count(expired) && opened + expired > 0) {
    return expired > opened ? "host" : "device";
  }
  const host = gate?.host_submit_median_ms;
  const median = t.details?.candidate?.median_ms;
  if (typeof host !== "number" || !Number.isFinite(host) || host < 0 || !positive(median)) {
    return null;
  }
  return host >= HOST_BOUND_SHARE * median ? "host" : "device";
}

const count = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
const positive = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v > 0;

/**
 * The baseline's latency on one time cell's workload, as measured beside the candidate: the ratio the
 * harness reports times the candidate's latency (so the overhead it subtracted from both is
 * subtracted here too), else the baseline's median (the harness subtracts nothing by default).
 */
export function sideBaselineLatency(t: Timing): number | null {
  const speedup = t.details?.speedup_vs_baseline;
  const lat = t.evaluation?.performance?.latency_ms;
  if (positive(speedup) && positive(lat)) return speedup * lat;
  const med = t.details?.baseline?.median_ms;
  return positive(med) ? med : null;
}

/**
 * Reads every time cell's timing.json (at the cell's root) once: what bounds the cell and whether the
 * tail check charged it into cell_timing, and the baseline timed beside the candidate (its name in
 * the cell's summary) into side_baseline. A cell whose timing.json does not parse is a diagnostic.
 * Returns the side_baseline rows written.
 */
export async function loadTimings(
  conn: DuckDBConnection,
  fragments: Fragment[],
  sols: Map<string, Solution>,
  diags: Diagnostic[],
): Promise<number> {
  const rows: unknown[][] = [];
  const timings: unknown[][] = [];
  for (const f of fragments) {
    // A shipped run may pack it (runs.ts PACKED_TIMINGS): it is then named as if in place.
    const path = [f.dir, f.packedDir].map((d) => d && join(d, "timing.json"))
      .find((p): p is string => !!p && existsSync(p));
    const s = (f.summary ?? null) as TimeSummary | null;
    if (!s || !path) continue;
    const file = displayName(f, join(f.dir, "timing.json"));
    const t = parseJsonOrDiagnose(readFileSync(path, "utf8"), file, diags) as Timing | undefined;
    if (t === undefined) continue;
    // Every timed cell's bound and tail charge (cell_timing), the baseline's or not.
    if (typeof t.solution === "string" && typeof t.workload === "string") {
      const rigor = Array.isArray(t.details?.rigor) ? t.details.rigor : [];
      const { sm_mhz, throttled } = cellClocks(t);
      timings.push([
        t.solution,
        t.workload,
        cellBound(t),
        rigor.includes(TAIL_CHARGE),
        sm_mhz,
        throttled,
      ]);
    }
    if (typeof s.baseline !== "string") continue;
    const base = sols.get(s.baseline);
    const uuid = typeof t.workload === "string" ? t.workload : s.workload;
    const lat = sideBaselineLatency(t);
    if (!base || base.definition !== s.definition || typeof uuid !== "string" || lat === null) {
      if (lat !== null && !base) {
        diags.push({
          level: "warning",
          file,
          path: "$.details.baseline",
          message: `baseline solution "${s.baseline}" not found; its timing is not used`,
        });
      }
      continue;
    }
    rows.push([base.definition, uuid, base.name, lat, file]);
  }
  await appendRows(conn, "side_baseline", rows);
  await appendRows(conn, "cell_timing", timings);
  return rows.length;
}
