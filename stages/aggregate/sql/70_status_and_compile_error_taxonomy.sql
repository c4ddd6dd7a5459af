-- Q: How do runs end, per author x language? Counts of every status (runs, not cells).
CREATE OR REPLACE VIEW status_taxonomy AS
SELECT author, language, status, sum(n_runs)::BIGINT AS n_runs,
  round(100.0 * sum(n_runs) / sum(sum(n_runs)) OVER (PARTITION BY author, language), 1) AS pct
FROM run_summary GROUP BY author, language, status ORDER BY author, language, status;

-- Q: Why does code fail to compile? Each COMPILE_ERROR run is filed under its log's first error
-- (compile_error_class, filled by compile_errors.ts: command lines, warnings and context are skipped,
-- and only the first error line is matched against the categories, the more specific ones first).
CREATE OR REPLACE VIEW compile_error_runs AS
SELECT e.author, e.language, e.definition, e.solution, e.file, e.line, e.log, c.first_error,
  coalesce(c.category, CASE WHEN e.log IS NULL OR trim(e.log) = '' THEN 'no log' ELSE 'other' END) AS category
FROM evaluations e
LEFT JOIN compile_error_class c ON c.log IS NOT DISTINCT FROM e.log
WHERE e.status = 'COMPILE_ERROR';

-- The example is the smallest first error of the category (min, not any_value: the table is byte-stable).
CREATE OR REPLACE VIEW compile_error_taxonomy AS
SELECT language, category, count(*) AS n_runs, count(DISTINCT solution) AS n_solutions,
  round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY language), 1) AS pct_of_language,
  min(left(regexp_replace(coalesce(first_error, log, ''), '\s+', ' ', 'g'), 160)) AS example
FROM compile_error_runs GROUP BY language, category ORDER BY language, n_runs DESC, category;
