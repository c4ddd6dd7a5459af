-- Q (Table A, Fig. 7): How often is each author's code correct, per language? Over the
-- (solution, workload) cells the author's solutions were evaluated on: passed cells / cells.
-- Also the share of solutions that passed every workload they were run on.
CREATE OR REPLACE VIEW correctness_rate_by_language_author AS
WITH per_solution AS (
  SELECT author, language, solution, bool_and(passed) AS all_passed, count(*) AS n_cells,
    count(*) FILTER (WHERE passed) AS n_passed
  FROM cells GROUP BY ALL
)
SELECT
  author, language,
  bool_or(author IN (SELECT author FROM baseline_rules)) AS is_baseline_author,
  count(*) AS n_solutions,
  sum(n_cells)::BIGINT AS n_cells,
  sum(n_passed)::BIGINT AS n_passed,
  round(100.0 * sum(n_passed) / sum(n_cells), 1) AS correctness_pct,
  round(100.0 * count(*) FILTER (WHERE all_passed) / count(*), 1) AS solutions_all_passed_pct
FROM per_solution
GROUP BY author, language
ORDER BY is_baseline_author, author, language;
