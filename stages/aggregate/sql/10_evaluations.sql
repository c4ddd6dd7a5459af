-- Q: What was evaluated? One row per trace, joined to its solution (author, language) and
-- definition (op type, panel). Authors named in baseline_rules are the references, not competitors.
CREATE OR REPLACE VIEW evaluations AS
SELECT
  t.file, t.line, t.definition, t.uuid, t.solution, s.author, s.language, d.op_type, d.panel,
  t.status, t.latency_ms, t.reference_latency_ms, t.speedup_factor,
  t.max_relative_error, t.max_absolute_error, t.hardware, t.timestamp, t.log,
  s.author IN (SELECT author FROM baseline_rules) AS is_baseline_author
FROM traces t
JOIN solutions s ON s.name = t.solution
JOIN definitions d ON d.name = t.definition;

-- Materialised once (every later view reads it; at 1M traces this replaces a dozen scans of the
-- raw rows): runs per (solution, workload, status) with the fastest timed PASSED latency.
CREATE OR REPLACE TABLE run_summary AS
SELECT solution, definition, uuid, status,
  any_value(author) AS author, any_value(language) AS language, any_value(op_type) AS op_type,
  any_value(panel) AS panel, any_value(is_baseline_author) AS is_baseline_author,
  count(*) AS n_runs,
  min(latency_ms) FILTER (WHERE status = 'PASSED' AND latency_ms > 0) AS min_latency_ms
FROM evaluations
GROUP BY solution, definition, uuid, status;

-- Q: What is the outcome of each (solution, workload) cell? A cell passes only when every run of
-- it passed (verify and time may both report on it); its latency is the minimum over its timed
-- PASSED runs; a failing cell is named by its most severe status.
CREATE OR REPLACE VIEW cells AS
SELECT
  r.solution, r.definition, r.uuid,
  any_value(r.author) AS author, any_value(r.language) AS language,
  any_value(r.op_type) AS op_type, any_value(r.panel) AS panel,
  any_value(r.is_baseline_author) AS is_baseline_author,
  sum(r.n_runs)::BIGINT AS n_runs,
  bool_and(r.status = 'PASSED') AS passed,
  CASE WHEN bool_and(r.status = 'PASSED') THEN min(r.min_latency_ms) END AS latency_ms,
  arg_min(r.status, o.severity) AS status
FROM run_summary r JOIN status_order o ON o.status = r.status
GROUP BY r.solution, r.definition, r.uuid;

-- Q: Every workload that exists: those of the workloads files plus any seen only in traces.
CREATE OR REPLACE VIEW all_workloads AS
SELECT definition, uuid FROM workloads
UNION
SELECT DISTINCT definition, uuid FROM run_summary;
