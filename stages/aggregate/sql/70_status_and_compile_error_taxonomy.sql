-- Q: How do runs end, per author x language? Counts of every status (runs, not cells).
CREATE OR REPLACE VIEW status_taxonomy AS
SELECT author, language, status, sum(n_runs)::BIGINT AS n_runs,
  round(100.0 * sum(n_runs) / sum(sum(n_runs)) OVER (PARTITION BY author, language), 1) AS pct
FROM run_summary GROUP BY author, language, status ORDER BY author, language, status;

-- Q: Why does code fail to compile? COMPILE_ERROR logs sorted into categories by pattern; the
-- first matching pattern wins, so the more specific ones come first.
CREATE OR REPLACE VIEW compile_error_runs AS
SELECT author, language, definition, solution, file, line, log,
  CASE
    WHEN regexp_matches(log, '__host__|__device__|host function|device function', 'i') THEN 'host/device confusion'
    WHEN regexp_matches(log, 'ptxas|too much shared|registers|out of resources', 'i') THEN 'resource limits (ptxas/shared memory)'
    WHEN regexp_matches(log, 'undefined reference|undefined symbol|unresolved external', 'i') THEN 'link error / undefined symbol'
    WHEN regexp_matches(log, 'ModuleNotFoundError|No module named|ImportError|No such file or directory|cannot open source file', 'i') THEN 'missing module or header'
    WHEN regexp_matches(log, 'is undefined|was not declared|undeclared identifier|NameError|is not defined|has no attribute|AttributeError', 'i') THEN 'undefined name / API misuse'
    WHEN regexp_matches(log, 'SyntaxError|syntax error|expected a|expected .;.|IndentationError', 'i') THEN 'syntax error'
    WHEN regexp_matches(log, 'no suitable conversion|cannot convert|incompatible|TypeError|dtype|no instance of overloaded', 'i') THEN 'type or dtype mismatch'
    WHEN regexp_matches(log, 'CompilationError|triton', 'i') THEN 'Triton compilation error (other)'
    WHEN log IS NULL OR trim(log) = '' THEN 'no log'
    ELSE 'other'
  END AS category
FROM evaluations WHERE status = 'COMPILE_ERROR';

CREATE OR REPLACE VIEW compile_error_taxonomy AS
SELECT language, category, count(*) AS n_runs, count(DISTINCT solution) AS n_solutions,
  round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY language), 1) AS pct_of_language,
  any_value(left(regexp_replace(log, '\s+', ' ', 'g'), 160)) AS example
FROM compile_error_runs GROUP BY language, category ORDER BY language, n_runs DESC, category;
