/**
 * Claims: each finding of the paper that the project can test and each headline number of the
 * project, as a query over a run's database that yields one value, the paper's value beside it and
 * the check that counts as reproduced (claims.json at the repository root). A claim is PASS, FAIL,
 * or NOT RUN with the reason: a requirement this run does not meet (no GPU, FlashInfer absent, a
 * stage that has not landed), or no data to decide it. Run-scoped claims read one run's views;
 * cross-run claims ("runs") read every run's cells (run_cells) beside the primary run's id.
 */
import { readFileSync } from "node:fs";
import type { DuckDBConnection } from "@duckdb/node-api";
import { z } from "zod";
import { all, appendRows, closeDb, openDb, type Row } from "./db.ts";
import type { Table } from "./tables.ts";

const Check = z.discriminatedUnion("op", [
  z.object({ op: z.enum([">=", "<=", ">", "<"]), value: z.number() }),
  /** |ours − paper| ≤ abs */
  z.object({ op: z.literal("within"), abs: z.number().nonnegative() }),
]);

const Claim = z.object({
  id: z.string().regex(/^[a-z0-9_.-]+$/, "lower-case letters, digits, '.', '_' and '-'"),
  source: z.enum(["paper", "project"]),
  where: z.string().min(1),
  claim: z.string().min(1),
  paper: z.number().nullable().default(null),
  unit: z.string().default(""),
  scope: z.enum(["run", "runs"]).default("run"),
  requires: z.array(z.string()).default([]),
  /** One row: `value` (number or NULL), optionally `n` (how many cells decide it). */
  sql: z.string().min(1),
  min_n: z.number().int().nonnegative().default(0),
  check: Check,
  /** Why it is NOT RUN when the query finds nothing to decide it. */
  empty: z.string().default("no data in this run decides it"),
  /**
   * `run`: decided on the deciding run alone. `newest-record`: for measurements recorded beside a
   * run's traces rather than in them (apply(), harness fidelity), taken in calls of their own: where
   * the deciding run records none, the newest other run of the same GPU model that does decides it,
   * and the verdict names that run.
   */
  from: z.enum(["run", "newest-record"]).default("run"),
  how: z.string().min(1),
});
/** One claim of claims.json. */
export type Claim = z.infer<typeof Claim>;

const ClaimsFile = z.object({
  about: z.string().optional(),
  /** name → a query yielding `ok` (boolean) on a run, and the reason shown when it is false. */
  requirements: z.record(z.string(), z.object({ sql: z.string(), why: z.string() })),
  claims: z.array(Claim).min(1),
});
/** Parsed claims.json. */
export type ClaimsFile = z.infer<typeof ClaimsFile>;

/** A claims file that cannot be used: one line naming the file, JSON path and reason. */
export class ClaimsError extends Error {}

const jsonPath = (path: PropertyKey[]) =>
  "$" + path.map((p) => typeof p === "number" ? `[${p}]` : `.${String(p)}`).join("");

/** Reads and checks claims.json (ids unique, every requirement named exists). */
export function loadClaims(path: string, shown = path): ClaimsFile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ClaimsError(`${shown}: $: ${(e as Error).message}`);
  }
  const r = ClaimsFile.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new ClaimsError(`${shown}: ${jsonPath(i.path)}: ${i.message}`);
  }
  const seen = new Set<string>();
  r.data.claims.forEach((c, i) => {
    if (seen.has(c.id)) throw new ClaimsError(`${shown}: $.claims[${i}].id: "${c.id}" repeats`);
    seen.add(c.id);
    c.requires.forEach((q, j) => {
      if (!(q in r.data.requirements)) {
        throw new ClaimsError(
          `${shown}: $.claims[${i}].requires[${j}]: unknown requirement "${q}" (known: ${
            Object.keys(r.data.requirements).join(", ")
          })`,
        );
      }
    });
  });
  return r.data;
}

/** Facts of a run outside its traces (run.json flattened): key → number or text. */
export type RunFacts = Record<string, number | string | boolean | null>;

/** Flattens a JSON object into dotted keys (arrays by index). */
export function flattenFacts(v: unknown, prefix = "", out: RunFacts = {}): RunFacts {
  if (v !== null && typeof v === "object") {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      flattenFacts(x, prefix ? `${prefix}.${k}` : k, out);
    }
  } else if (prefix) out[prefix] = v as number | string | boolean | null;
  return out;
}

/** What one run contributes: its run-scoped values, its requirements, and its cells. */
export interface RunClaimInputs {
  values: Record<string, { value: number | null; n: number | null; error?: string }>;
  /** requirement name → met */
  met: Record<string, boolean>;
  cells: unknown[][];
  facts: RunFacts;
}

const substitute = (sql: string, vars: Record<string, string>) =>
  sql.replace(/\{(root|run)\}/g, (_, k: string) => vars[k].replaceAll("'", "''"));

const numOrNull = (v: unknown) =>
  v === null || v === undefined ? null : Number.isFinite(Number(v)) ? Number(v) : null;

async function loadFacts(conn: DuckDBConnection, facts: RunFacts): Promise<void> {
  await conn.run("CREATE OR REPLACE TABLE run_facts (key VARCHAR, num DOUBLE, text VARCHAR)");
  await appendRows(
    conn,
    "run_facts",
    Object.entries(facts).map(([k, v]) => [
      k,
      typeof v === "number" ? v : null,
      v === null ? null : String(v),
    ]),
  );
}

/** Evaluates the run-scoped claims and every requirement on one run's open database. */
export async function runClaimInputs(
  conn: DuckDBConnection,
  file: ClaimsFile,
  facts: RunFacts,
  root: string,
  runId: string,
): Promise<RunClaimInputs> {
  await loadFacts(conn, facts);
  const vars = { root, run: runId };
  const met: Record<string, boolean> = {};
  for (const [name, q] of Object.entries(file.requirements)) {
    try {
      met[name] = (await all(conn, substitute(q.sql, vars)))[0]?.ok === true;
    } catch {
      met[name] = false;
    }
  }
  const values: RunClaimInputs["values"] = {};
  for (const c of file.claims.filter((c) => c.scope === "run")) {
    values[c.id] = await queryValue(conn, substitute(c.sql, vars));
  }
  const cells = (await all(
    conn,
    `SELECT c.solution, c.definition, c.uuid, c.status, c.latency_ms, b.bound
       FROM cells c LEFT JOIN (SELECT solution, uuid, any_value(bound) AS bound FROM cell_timing GROUP BY ALL) b
       USING (solution, uuid) ORDER BY solution, definition, uuid`,
  )).map((r) => [r.solution, r.definition, r.uuid, r.status, r.latency_ms, r.bound]);
  return { values, met, cells, facts };
}

async function queryValue(conn: DuckDBConnection, sql: string) {
  try {
    const row: Row | undefined = (await all(conn, sql))[0];
    return { value: numOrNull(row?.value), n: numOrNull(row?.n) };
  } catch (e) {
    return { value: null, n: null, error: String((e as Error).message).split("\n")[0] };
  }
}

/** A run as the claims see it. */
export interface ClaimRun {
  id: string;
  gpu: string | null;
  inputs: RunClaimInputs;
}

/** One claim's verdict on the primary run. */
export interface ClaimResult {
  id: string;
  source: string;
  where: string;
  claim: string;
  status: "PASS" | "FAIL" | "NOT RUN";
  ours: number | null;
  paper: number | null;
  unit: string;
  expected: string;
  n: number | null;
  why: string;
  how: string;
  /** The run whose record decided it, where that is not the deciding run (`from: newest-record`). */
  recordedIn?: string;
  /** The query failed: the claims file is wrong (tp claims exits 2). */
  error?: string;
}

/** The expected value in words: "≥ 60", "83 ± 10". */
export function expectedText(c: Claim): string {
  const ck = c.check;
  if (ck.op === "within") return `${c.paper ?? "?"} ± ${ck.abs}${c.unit ? " " + c.unit : ""}`;
  const sym = { ">=": "≥", "<=": "≤", ">": ">", "<": "<" }[ck.op];
  return `${sym} ${ck.value}${c.unit ? " " + c.unit : ""}`;
}

/** Whether `v` satisfies the claim's check. */
export function passes(c: Claim, v: number): boolean {
  const ck = c.check;
  switch (ck.op) {
    case ">=":
      return v >= ck.value;
    case "<=":
      return v <= ck.value;
    case ">":
      return v > ck.value;
    case "<":
      return v < ck.value;
    case "within":
      return c.paper !== null && Math.abs(v - c.paper) <= ck.abs + 1e-9;
  }
}

/** Cross-run claims: every run's cells and facts in one database, the primary run's id as {run}. */
async function crossRunValues(file: ClaimsFile, runs: ClaimRun[], primary: string, root: string) {
  const out: RunClaimInputs["values"] = {};
  const claims = file.claims.filter((c) => c.scope === "runs");
  if (!claims.length) return out;
  const db = await openDb(":memory:");
  try {
    await db.conn.run(
      `CREATE TABLE run_cells (run VARCHAR, gpu VARCHAR, solution VARCHAR, definition VARCHAR,
         uuid VARCHAR, status VARCHAR, latency_ms DOUBLE);
       CREATE TABLE runs (run VARCHAR, gpu VARCHAR);`,
    );
    for (const r of runs) {
      await appendRows(db.conn, "runs", [[r.id, r.gpu]]);
      await appendRows(
        db.conn,
        "run_cells",
        r.inputs.cells.map((c) => [r.id, r.gpu, ...c.slice(0, 5)]),
      );
    }
    for (const c of claims) {
      out[c.id] = await queryValue(db.conn, substitute(c.sql, { root, run: primary }));
    }
  } finally {
    closeDb(db);
  }
  return out;
}

/** Decides every claim on the primary run (cross-run claims see all runs). */
export async function decideClaims(
  file: ClaimsFile,
  runs: ClaimRun[],
  primary: string,
  root: string,
): Promise<ClaimResult[]> {
  const run = runs.find((r) => r.id === primary);
  if (!run) throw new ClaimsError(`claims: no run "${primary}" among ${runs.map((r) => r.id)}`);
  const cross = await crossRunValues(file, runs, primary, root);
  return file.claims.map((c) => {
    const own = decideOn(file, c, run, cross);
    if (c.from !== "newest-record" || own.status !== "NOT RUN" || own.error) return own;
    // The newest other run of the same GPU model whose record decides it (runs are oldest first).
    for (const other of [...runs].reverse()) {
      if (other.id === primary || other.gpu !== run.gpu) continue;
      const theirs = decideOn(file, c, other, cross);
      if (theirs.status !== "NOT RUN") {
        return { ...theirs, recordedIn: other.id, why: `recorded in run ${other.id}` };
      }
    }
    return own;
  });
}

/** One claim decided on one run's values (cross-run values are the primary run's). */
function decideOn(
  file: ClaimsFile,
  c: Claim,
  run: ClaimRun,
  cross: RunClaimInputs["values"],
): ClaimResult {
  const v = c.scope === "run" ? run.inputs.values[c.id] : cross[c.id];
  const unmet = c.requires.filter((q) => !run.inputs.met[q]).map((q) => file.requirements[q].why);
  const base = {
    id: c.id,
    source: c.source,
    where: c.where,
    claim: c.claim,
    ours: v?.value ?? null,
    paper: c.paper,
    unit: c.unit,
    expected: expectedText(c),
    n: v?.n ?? null,
    how: c.how,
  };
  if (unmet.length) {
    return { ...base, ours: null, n: null, status: "NOT RUN", why: unmet.join("; ") };
  }
  if (!v || v.error) {
    return { ...base, status: "NOT RUN", why: `query failed: ${v?.error}`, error: v?.error };
  }
  if (v.value === null) return { ...base, status: "NOT RUN", why: c.empty };
  if (c.min_n && (v.n ?? 0) < c.min_n) {
    return { ...base, status: "NOT RUN", why: `too few cells (n = ${v.n ?? 0} < ${c.min_n})` };
  }
  const ok = passes(c, v.value);
  return { ...base, status: ok ? "PASS" : "FAIL", why: "" };
}

const fmt = (v: number | null) =>
  v === null ? "—" : Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(4)));

/** The claims as a table (CSV, Markdown, HTML). */
export function claimsTable(results: ClaimResult[], runLabel: string): Table {
  return {
    id: "claims",
    title: "Claims",
    caption:
      `Each claim of the paper that this data can test and each headline claim of the project (claims.json: ` +
      `the query that decides it, the paper's value, the check that counts as reproduced), decided on ${runLabel}.`,
    columns: ["status", "claim_id", "where", "ours", "paper", "expected", "n", "why", "claim"],
    rows: results.map((r) => ({
      status: r.status,
      claim_id: r.id,
      where: r.where,
      ours: r.ours === null ? null : Number(fmt(r.ours)),
      paper: r.paper,
      expected: r.expected,
      n: r.n,
      why: r.why,
      claim: r.claim,
    })),
  };
}

/** One line per claim, for the terminal. */
export function claimLines(results: ClaimResult[]): string[] {
  const w = Math.max(...results.map((r) => r.id.length));
  return results.map((r) => {
    const unit = r.unit ? ` ${r.unit}` : "";
    const nums = `ours ${fmt(r.ours)}${r.ours === null ? "" : unit}, paper ${fmt(r.paper)}${
      r.paper === null ? "" : unit
    }, expected ${r.expected}`;
    const tail = r.status === "NOT RUN" || r.recordedIn ? ` — ${r.why}` : "";
    return `${r.status.padEnd(7)}  ${r.id.padEnd(w)}  ${nums}${tail}`;
  });
}
