/**
 * Reads collect's simulated traces (sites.parquet, events.parquet) through DuckDB and turns them
 * into candidate shapes, grouped by kernel family and constant axes; each group carries the
 * definitions it matches. Also sums the model's total estimated kernel time, the denominator of
 * every time share in the report.
 */
import { join } from "node:path";
import type { CellResult } from "../../pipeline/engine/mod.ts";
import type { Definition } from "../../pipeline/trace/mod.ts";
import { openDuckDB } from "../../pipeline/lib/duckdb.ts";
import { type Family, isAttention, matchDefinitions, siteFamily } from "./families.ts";
import type { Candidate } from "./select.ts";

/** The summary of a collect cell that simulated a model. */
export interface SimSummary {
  kind: "sim";
  model: string;
  engine: string;
  pageSize: number;
  smScale: number;
  routedScalingFactor: number;
}

/** One kernel-call site of a simulated cell (a row of its sites.parquet). */
interface SiteRow {
  /** Index of the simulated cell in the `sims` list. */
  cell: number;
  siteIdx: number;
  site: string;
  opType: string;
  when: string;
  mult: number;
  consts: Record<string, number>;
}

/** The candidate shapes of one (family, constant axes) group and the definitions it matches. */
export interface ShapeGroup {
  family: Family;
  consts: Record<string, number>;
  defs: Definition[];
  cands: Candidate[];
  sites: SiteRow[];
}

/** Candidate groups keyed `<family>:<consts JSON>`, and the model's total estimated time (µs). */
export interface ScannedEvents {
  groups: Map<string, ShapeGroup>;
  totalTime: number;
}

type Connection = Awaited<ReturnType<typeof openDuckDB>>["con"];

/** SQL string literal. */
const sqlString = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** Scans every simulated cell's sites and events into candidate groups for `defs`. */
export async function scanEvents(sims: CellResult[], defs: Definition[]): Promise<ScannedEvents> {
  const { con, close } = await openDuckDB();
  let scanned: ScannedEvents;
  try {
    const { sites, totalTime } = await readSites(con, sims);
    scanned = { groups: await groupCandidates(con, sims, sites, defs), totalTime };
  } finally {
    close();
  }
  mergeEqualKeys(scanned.groups);
  return scanned;
}

/** All sites of all cells in (cell, site index) order, with the total estimated time. */
async function readSites(
  con: Connection,
  sims: CellResult[],
): Promise<{ sites: SiteRow[]; totalTime: number }> {
  const sites: SiteRow[] = [];
  let totalTime = 0;
  for (let ci = 0; ci < sims.length; ci++) {
    const dir = sims[ci].dir;
    const rows =
      (await con.runAndReadAll(`SELECT site_idx, site, op_type, run_when, multiplicity, consts
        FROM read_parquet(${sqlString(join(dir, "sites.parquet"))}) ORDER BY site_idx`)).getRows();
    for (const r of rows) {
      sites.push({
        cell: ci,
        siteIdx: Number(r[0]),
        site: String(r[1]),
        opType: String(r[2]),
        when: String(r[3]),
        mult: Number(r[4]),
        consts: JSON.parse(String(r[5])),
      });
    }
    const tt = await con.runAndReadAll(
      `SELECT sum(e.est_us * s.multiplicity) FROM read_parquet(${
        sqlString(join(dir, "events.parquet"))
      }) e
        JOIN read_parquet(${sqlString(join(dir, "sites.parquet"))}) s USING (site_idx)`,
    );
    totalTime += Number(tt.getRows()[0][0] ?? 0);
  }
  return { sites, totalTime };
}

/** Groups the sites by (family, consts) and gathers each site's distinct shapes as candidates. */
async function groupCandidates(
  con: Connection,
  sims: CellResult[],
  sites: SiteRow[],
  defs: Definition[],
): Promise<Map<string, ShapeGroup>> {
  const groups = new Map<string, ShapeGroup>();
  for (const s of sites) {
    const fam = siteFamily(s.opType, s.when);
    if (!fam) continue;
    const gk = `${fam}:${JSON.stringify(s.consts)}`;
    let g = groups.get(gk);
    if (!g) {
      g = {
        family: fam,
        consts: s.consts,
        defs: matchDefinitions(defs, fam, s.consts),
        cands: [],
        sites: [],
      };
      groups.set(gk, g);
    }
    g.sites.push(s);
    const events = sqlString(join(sims[s.cell].dir, "events.parquet"));
    for (const r of (await con.runAndReadAll(shapeQuery(fam, s, events))).getRows()) {
      g.cands.push(candidateFromRow(fam, r.map(Number), s.cell));
    }
  }
  return groups;
}

/**
 * The distinct shapes of one site's events with count, time (scaled by the site's multiplicity)
 * and first iteration. Attention's key is flashinfer-bench's: batch size, average KV and query length.
 */
function shapeQuery(fam: Family, s: SiteRow, events: string): string {
  return isAttention(fam)
    ? `SELECT batch_size, round(total_kv / batch_size)::INTEGER, round(total_q / batch_size)::INTEGER,
             count(*), sum(est_us) * ${s.mult}, min(iter)
           FROM read_parquet(${events}) WHERE site_idx = ${s.siteIdx} GROUP BY ALL ORDER BY 1, 2, 3`
    : `SELECT m, count(*), sum(est_us) * ${s.mult}, min(iter)
           FROM read_parquet(${events}) WHERE site_idx = ${s.siteIdx} GROUP BY m ORDER BY 1`;
}

/** A candidate from one row of `shapeQuery`. */
function candidateFromRow(fam: Family, nums: number[], cell: number): Candidate {
  return isAttention(fam)
    ? { key: nums.slice(0, 3), count: nums[3], timeUs: nums[4], cell, iter: nums[5] }
    : { key: [nums[0]], count: nums[1], timeUs: nums[2], cell, iter: nums[3] };
}

/** Merges equal keys across sites of one cell (e.g. the o_proj and down_proj of one GEMM shape). */
function mergeEqualKeys(groups: Map<string, ShapeGroup>): void {
  for (const g of groups.values()) {
    const m = new Map<string, Candidate>();
    for (const c of g.cands) {
      const k = `${c.cell}:${c.key.join(",")}`;
      const prev = m.get(k);
      if (prev) {
        prev.count += c.count;
        prev.timeUs += c.timeUs;
        prev.iter = Math.min(prev.iter, c.iter);
      } else m.set(k, { ...c });
    }
    g.cands = [...m.values()];
  }
}
