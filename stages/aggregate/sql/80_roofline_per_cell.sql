-- Q: How close to the hardware limit is each passing cell? roofline time = max(FLOPs / peak
-- matrix rate, bytes / copy bandwidth) with the ceilings from settings (measured on the H100,
-- shared/research/h100-baselines.md); % of roofline = roofline time / measured latency.
CREATE OR REPLACE VIEW roofline_per_cell AS
SELECT c.solution, c.author, c.language, c.definition, c.op_type, c.uuid, c.latency_ms,
  w.flops, w.bytes, w.model,
  1e3 * greatest(w.flops / (st.tflops * 1e12), w.bytes / (st.bandwidth_tbs * 1e12)) AS roofline_ms,
  CASE WHEN w.flops / st.tflops > w.bytes / st.bandwidth_tbs THEN 'compute' ELSE 'memory' END AS bound,
  round(100.0 * roofline_ms / c.latency_ms, 2) AS pct_of_roofline
FROM cells c JOIN workload_cost w USING (definition, uuid) CROSS JOIN settings st
WHERE c.passed AND c.latency_ms > 0
ORDER BY c.definition, c.uuid, c.solution;

-- Q: The same summarised per author x language x op type (median and best).
CREATE OR REPLACE VIEW roofline_by_author_language_op AS
SELECT author, language, op_type, count(*) AS n_cells,
  round(median(pct_of_roofline), 2) AS median_pct_of_roofline,
  round(max(pct_of_roofline), 2) AS max_pct_of_roofline
FROM roofline_per_cell GROUP BY ALL ORDER BY op_type, author, language;
