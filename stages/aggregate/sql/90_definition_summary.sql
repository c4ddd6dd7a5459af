-- Q: What happened on each definition? Workloads, solutions, runs, correctness, the baseline
-- used, and the author with the most workloads won against it (r > 1; a tie goes to the smallest
-- author name, so the table is byte-stable).
CREATE OR REPLACE VIEW definition_summary AS
WITH w AS (SELECT definition, count(*) AS n_workloads FROM all_workloads GROUP BY ALL),
s AS (
  SELECT definition, count(*) FILTER (WHERE author NOT IN (SELECT author FROM baseline_rules)) AS n_solutions,
    count(DISTINCT author) FILTER (WHERE author NOT IN (SELECT author FROM baseline_rules)) AS n_authors
  FROM solutions GROUP BY ALL
),
c AS (
  SELECT definition, sum(n_runs)::BIGINT AS n_runs, count(*) AS n_cells, count(*) FILTER (WHERE passed) AS n_passed
  FROM cells GROUP BY ALL
),
wins AS (
  SELECT definition, author, count(*) FILTER (WHERE r > 1) AS n_faster,
    median(r) AS median_r
  FROM win_ratio_per_author_workload GROUP BY ALL
),
best AS (
  SELECT definition, arg_max(author, n_faster ORDER BY author) AS top_author, max(n_faster) AS top_author_faster,
    max(median_r) AS best_median_speedup
  FROM wins GROUP BY ALL
)
SELECT d.name AS definition, d.op_type, d.panel,
  coalesce(w.n_workloads, 0) AS n_workloads, coalesce(s.n_solutions, 0) AS n_solutions,
  coalesce(s.n_authors, 0) AS n_authors, coalesce(c.n_runs, 0) AS n_runs,
  coalesce(c.n_cells, 0) AS n_cells,
  round(100.0 * c.n_passed / c.n_cells, 1) AS correctness_pct,
  coalesce(bc.label, 'none') AS baseline,
  coalesce(bc.is_fallback, false) AS baseline_is_fallback,
  (SELECT count(*) FROM baseline_latency_per_workload bl WHERE bl.definition = d.name) AS n_workloads_with_baseline,
  b.top_author, b.top_author_faster, round(b.best_median_speedup, 3) AS best_median_speedup
FROM definitions d
LEFT JOIN w ON w.definition = d.name
LEFT JOIN s ON s.definition = d.name
LEFT JOIN c ON c.definition = d.name
LEFT JOIN baseline_choice bc ON bc.definition = d.name
LEFT JOIN best b ON b.definition = d.name
WHERE coalesce(w.n_workloads, 0) > 0 OR coalesce(s.n_solutions, 0) > 0
ORDER BY d.op_type, d.name;
