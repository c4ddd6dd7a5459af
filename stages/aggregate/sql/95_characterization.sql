-- The decode characterization grid's points (extract's `characterization` cell, its
-- characterization.json), filled by characterization.ts after the views exist; empty in a run without
-- the grid, and then every view below is empty and the report has no characterization section.
CREATE TABLE IF NOT EXISTS characterization_points (
  uuid VARCHAR, definition VARCHAR, config VARCHAR, num_qo_heads INTEGER, num_kv_heads INTEGER,
  head_dim INTEGER, page_size INTEGER, batch_size INTEGER, kv_len INTEGER, kv_bytes DOUBLE,
  sweeps VARCHAR
);

-- Q: How fast is each implementation at each grid point, and what share of the machine's copy
-- bandwidth does it reach? achieved bandwidth = bytes the call must move (roofline.ts: Q, the K/V pages
-- it indexes, the index tensors, the outputs) / latency; % of copy bandwidth against settings'
-- bandwidth_tbs (the H100's measured device-to-device copy, shared/research/h100-baselines.md).
-- The implementation is the solution's kernel (a sweep solution's name up to its first `__`).
CREATE OR REPLACE VIEW characterization_cells AS
SELECT p.config, p.definition, p.num_qo_heads, p.num_kv_heads, p.head_dim, p.page_size,
  p.config || ' ' || p.num_qo_heads || '/' || p.num_kv_heads || ' d' || p.head_dim || ' ps' || p.page_size AS series,
  p.batch_size, p.kv_len, p.kv_bytes, p.uuid,
  split_part(c.solution, '__', 1) AS implementation, c.solution, c.author, c.language,
  c.latency_ms, w.bytes,
  w.bytes / (c.latency_ms * 1e-3) / 1e12 AS achieved_tbs,
  100.0 * (w.bytes / (c.latency_ms * 1e-3) / 1e12) / st.bandwidth_tbs AS pct_copy_bw,
  t.sm_mhz, t.throttled
FROM characterization_points p
JOIN cells c ON c.uuid = p.uuid AND c.definition = p.definition
JOIN workload_cost w ON w.uuid = p.uuid AND w.definition = p.definition
LEFT JOIN (SELECT solution, uuid, min(sm_mhz) AS sm_mhz, bool_or(throttled) AS throttled
           FROM cell_timing GROUP BY ALL) t ON t.solution = c.solution AND t.uuid = p.uuid
CROSS JOIN settings st
WHERE c.passed AND c.latency_ms > 0
ORDER BY series, p.kv_len, p.batch_size, implementation;

-- Q: Which implementation is fastest at each grid point, and by how much over the next one?
CREATE OR REPLACE VIEW characterization_best AS
WITH ranked AS (
  SELECT *, row_number() OVER (PARTITION BY uuid ORDER BY latency_ms, implementation) AS rk,
    count(*) OVER (PARTITION BY uuid) AS n_impl
  FROM characterization_cells
)
SELECT b.series, b.config, b.head_dim, b.page_size, b.batch_size, b.kv_len,
  b.implementation AS best, b.latency_ms AS best_latency_ms, r.implementation AS runner_up,
  round(r.latency_ms / b.latency_ms, 3) AS runner_up_slowdown, b.n_impl AS implementations
FROM ranked b LEFT JOIN ranked r ON r.uuid = b.uuid AND r.rk = 2
WHERE b.rk = 1
ORDER BY b.series, b.kv_len, b.batch_size;

-- Q: Which grid points have no passing implementation to show (every cell failed or none was judged)?
CREATE OR REPLACE VIEW characterization_unjudged AS
SELECT p.definition, p.batch_size, p.kv_len,
  (SELECT count(*) FROM cells c WHERE c.uuid = p.uuid) AS cells,
  (SELECT string_agg(DISTINCT c.status, ' ') FROM cells c WHERE c.uuid = p.uuid AND NOT c.passed) AS statuses
FROM characterization_points p
WHERE NOT EXISTS (SELECT 1 FROM characterization_cells x WHERE x.uuid = p.uuid)
ORDER BY p.definition, p.kv_len, p.batch_size;
