/**
 * Writes a simulation's iterations, kernel-call events and request outcomes as Parquet through
 * DuckDB. Events are expanded inside DuckDB (iterations × the model's call sites), so millions of
 * rows never cross the JS boundary one value at a time.
 */
import { openDuckDB } from "../../pipeline/lib/duckdb.ts";
// Types only: the package loads when a table is written (pipeline/lib/duckdb.ts says why).
import type { DuckDBConnection, DuckDBType } from "@duckdb/node-api";
import type { EngineConfig, ModelShape, SimResult } from "../../pipeline/serving/mod.ts";

/** Appends columns (equal length) to an existing table in chunks of 2048 rows. */
export async function appendColumns(
  con: DuckDBConnection,
  table: string,
  types: DuckDBType[],
  columns: ReadonlyArray<ArrayLike<number | string | boolean | null>>,
): Promise<void> {
  const { DuckDBDataChunk } = await import("@duckdb/node-api");
  const n = columns[0]?.length ?? 0;
  const app = await con.createAppender(table);
  for (let s = 0; s < n; s += 2048) {
    const m = Math.min(2048, n - s);
    const chunk = DuckDBDataChunk.create(types, m);
    columns.forEach((col, c) =>
      chunk.setColumnValues(c, Array.prototype.slice.call(col, s, s + m))
    );
    app.appendDataChunk(chunk);
  }
  app.flushSync();
  app.closeSync();
}

const sqlStr = (s: string) => `'${s.replaceAll("'", "''")}'`;

/** Writes iterations.parquet, events.parquet and requests.parquet into `dir`. */
export async function writeEventParquet(
  dir: string,
  sim: SimResult,
  model: ModelShape,
  eng: EngineConfig,
): Promise<{ events: number; iterations: number }> {
  const { BOOLEAN, DOUBLE, INTEGER, VARCHAR } = await import("@duckdb/node-api");
  const { con, close } = await openDuckDB();
  try {
    const it = sim.iterations;
    await con.run(`CREATE TABLE iterations (
      iter INTEGER, t_start_us DOUBLE, dur_us DOUBLE, decode BOOLEAN, has_prefix BOOLEAN,
      tokens INTEGER, seqs INTEGER, batch INTEGER, kv_tokens INTEGER, kv_pages INTEGER, qk DOUBLE,
      max_kv INTEGER, max_q INTEGER, used_pages INTEGER, running INTEGER,
      experts_active INTEGER, max_tokens_per_expert INTEGER, retracted INTEGER)`);
    const I = INTEGER, D = DOUBLE, B = BOOLEAN;
    await appendColumns(con, "iterations", [I, D, D, B, B, I, I, I, I, I, D, I, I, I, I, I, I, I], [
      it.iter,
      it.tStartUs,
      it.durUs,
      it.decode.map((x) => x === 1),
      it.hasPrefix.map((x) => x === 1),
      it.tokens,
      it.seqs,
      it.batch,
      it.kvTokens,
      it.kvPages,
      it.qk,
      it.maxKv,
      it.maxQ,
      it.usedPages,
      it.running,
      it.expertsActive,
      it.maxPerExpert,
      it.retracted,
    ]);
    await con.run(`CREATE TABLE sites (
      site_idx INTEGER, site VARCHAR, op_type VARCHAR, run_when VARCHAR, row_kind VARCHAR, mult INTEGER,
      consts VARCHAR, f_row DOUBLE, f_attn DOUBLE, b0 DOUBLE, b_row DOUBLE, b_kv DOUBLE, b_exp DOUBLE)`);
    const p = model.plan;
    await appendColumns(con, "sites", [
      I,
      VARCHAR,
      VARCHAR,
      VARCHAR,
      VARCHAR,
      I,
      VARCHAR,
      D,
      D,
      D,
      D,
      D,
      D,
    ], [
      p.map((_, i) => i),
      p.map((s) => s.site),
      p.map((s) => s.opType),
      p.map((s) => s.when),
      p.map((s) => s.rows),
      p.map((s) => s.mult),
      p.map((s) => JSON.stringify(s.consts)),
      p.map((s) => s.fRow),
      p.map((s) => s.fAttn),
      p.map((s) => s.b0),
      p.map((s) => s.bRow),
      p.map((s) => s.bKv),
      p.map((s) => s.bExp),
    ]);
    const rows = `CASE s.row_kind WHEN 'tokens' THEN i.tokens WHEN 'seqs' THEN i.seqs
      WHEN 'tokens_x_qheads' THEN i.tokens * ${model.qHeads} ELSE i.tokens * ${model.kvHeads} END`;
    const runs = `CASE s.run_when WHEN 'any' THEN true WHEN 'decode' THEN i.decode
      WHEN 'extend' THEN NOT i.decode WHEN 'extend_ragged' THEN NOT i.decode AND NOT i.has_prefix
      ELSE NOT i.decode AND i.has_prefix END`;
    const attn = `s.op_type IN ('gqa_paged','gqa_ragged','mla_paged','mla_ragged')`;
    const paged = `s.op_type IN ('gqa_paged','mla_paged')`;
    await con.run(`COPY (
      SELECT i.iter, s.site_idx::SMALLINT AS site_idx,
        (${rows})::INTEGER AS m,
        CASE WHEN ${attn} THEN i.batch END AS batch_size,
        CASE WHEN ${attn} THEN i.tokens END AS total_q,
        CASE WHEN ${attn} THEN i.kv_tokens END AS total_kv,
        CASE WHEN ${paged} THEN i.kv_pages END AS num_kv_indices,
        CASE WHEN ${attn} THEN i.max_kv END AS max_kv_len,
        CASE WHEN ${attn} THEN i.max_q END AS max_q_len,
        CASE WHEN s.op_type = 'moe' THEN i.experts_active END AS experts_active,
        CASE WHEN s.op_type = 'moe' THEN i.max_tokens_per_expert END AS max_tokens_per_expert,
        (${eng.launchUs} + greatest(
          (s.f_row * (${rows}) + s.f_attn * i.qk) / ${eng.peakTflops * 1e6},
          (s.b0 + s.b_row * (${rows}) + s.b_kv * i.kv_tokens + s.b_exp * i.experts_active) / ${
      eng.hbmGBps * 1e3
    }
        ))::REAL AS est_us
      FROM iterations i JOIN sites s ON (${runs})
      -- A site with no rows is not launched: an extend iteration in which no sequence finishes its
      -- prefill samples nothing (no lm_head, no sampling call).
      WHERE (${rows}) > 0
      ORDER BY i.iter, s.site_idx
    ) TO ${sqlStr(`${dir}/events.parquet`)} (FORMAT parquet, COMPRESSION zstd)`);
    await con.run(`COPY (SELECT site_idx::SMALLINT AS site_idx, site, op_type, run_when, row_kind,
      mult AS multiplicity, consts, ${sim.poolPages} AS num_pages, ${eng.pageSize} AS page_size
      FROM sites ORDER BY site_idx) TO ${sqlStr(`${dir}/sites.parquet`)} (FORMAT parquet)`);
    await con.run(
      `COPY (SELECT * FROM iterations ORDER BY iter) TO ${sqlStr(`${dir}/iterations.parquet`)}
      (FORMAT parquet, COMPRESSION zstd)`,
    );
    const rq = sim.requests;
    await con.run(
      `CREATE TABLE requests (id INTEGER, arrival_s DOUBLE, prompt INTEGER, output INTEGER,
      generated INTEGER, hit_tokens INTEGER, extend_tokens INTEGER, decode_steps INTEGER, admissions INTEGER,
      retractions INTEGER, first_token_us DOUBLE, finish_us DOUBLE, rejected BOOLEAN)`,
    );
    await appendColumns(con, "requests", [I, D, I, I, I, I, I, I, I, I, D, D, B], [
      rq.map((r) => r.id),
      rq.map((r) => r.arrival),
      rq.map((r) => r.prompt),
      rq.map((r) => r.output),
      rq.map((r) => r.generated),
      rq.map((r) => r.hitTokens),
      rq.map((r) => r.extendTokens),
      rq.map((r) => r.decodeSteps),
      rq.map((r) => r.admissions),
      rq.map((r) => r.retractions),
      rq.map((r) => r.firstTokenUs),
      rq.map((r) => r.finishUs),
      rq.map((r) => r.rejected),
    ]);
    await con.run(`COPY (SELECT * FROM requests ORDER BY id) TO ${sqlStr(`${dir}/requests.parquet`)}
      (FORMAT parquet, COMPRESSION zstd)`);
    const r = await con.runAndReadAll(
      `SELECT count(*) FROM read_parquet(${sqlStr(`${dir}/events.parquet`)})`,
    );
    return { events: Number(r.getRows()[0][0]), iterations: it.iter.length };
  } finally {
    close();
  }
}
