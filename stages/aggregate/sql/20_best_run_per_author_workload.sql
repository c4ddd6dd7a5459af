-- Q: What is each author's best run on each workload? flashinfer-bench's win@p semantics: the
-- minimum-latency PASSED run over all of the author's solutions (any language); an author with
-- runs but no timed PASSED run keeps a row with latency NULL (it attempted and lost). Equal latencies
-- go to the smallest solution name (ORDER BY inside arg_min), so the table is byte-stable.
CREATE OR REPLACE VIEW best_run_per_author_workload AS
SELECT
  author, definition, uuid,
  any_value(is_baseline_author) AS is_baseline_author,
  sum(n_runs)::BIGINT AS n_runs,
  count(DISTINCT solution) AS n_solutions,
  min(min_latency_ms) AS latency_ms,
  arg_min(solution, min_latency_ms ORDER BY solution) AS best_solution
FROM run_summary
GROUP BY author, definition, uuid;

-- Q: The same per (author, language), over cells (a cell is correct only if all its runs passed);
-- this is the input of fast_p (Table B).
CREATE OR REPLACE VIEW best_run_per_author_language_workload AS
SELECT
  author, language, definition, uuid,
  bool_or(passed) AS correct,
  min(latency_ms) AS latency_ms,
  arg_min(solution, latency_ms ORDER BY solution) AS best_solution,
  count(*) AS n_solutions
FROM cells
WHERE NOT is_baseline_author
GROUP BY author, language, definition, uuid;
