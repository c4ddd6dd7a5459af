-- Q (Table B, Fig. 6): fast_p per panel (op type, split by decode/prefill where configured) x
-- language x author: the fraction of workloads that are correct AND faster than the baseline by
-- more than p (speedup = baseline latency / best latency; operator '>' per the paper, '>=' as
-- the web leaderboard if configured). The workloads counted are every workload of every
-- definition the (author, language) was evaluated on, so a workload it never ran counts as a
-- failure; workloads without a baseline latency are left out of N and counted apart. A solution
-- with no run at all (not selected, or not runnable on the judging machine) is not counted.
CREATE OR REPLACE VIEW fast_p_universe AS
WITH comp AS (
  SELECT DISTINCT s.author, s.language, s.definition, d.panel, d.op_type
  FROM solutions s JOIN definitions d ON d.name = s.definition
  WHERE s.author NOT IN (SELECT author FROM baseline_rules)
    AND s.name IN (SELECT solution FROM run_summary)
)
SELECT c.panel, c.op_type, c.language, c.author, w.definition, w.uuid,
  b.latency_ms AS baseline_ms, r.latency_ms, coalesce(r.correct, false) AS correct,
  b.latency_ms / r.latency_ms AS speedup
FROM comp c
JOIN all_workloads w ON w.definition = c.definition
LEFT JOIN baseline_latency_per_workload b ON b.definition = w.definition AND b.uuid = w.uuid
LEFT JOIN best_run_per_author_language_workload r
  ON r.author = c.author AND r.language = c.language AND r.definition = w.definition AND r.uuid = w.uuid;

CREATE OR REPLACE VIEW fast_p_by_op_language_author AS
SELECT
  u.panel, u.language, u.author, g.p,
  count(*) FILTER (WHERE u.baseline_ms IS NOT NULL) AS n_workloads,
  count(*) FILTER (WHERE u.baseline_ms IS NULL) AS n_without_baseline,
  count(*) FILTER (WHERE u.baseline_ms IS NOT NULL AND u.correct AND u.speedup IS NOT NULL AND (
    CASE WHEN st.fast_p_operator = '>=' THEN u.speedup >= g.p ELSE u.speedup > g.p END
  )) AS n_fast,
  CASE WHEN n_workloads > 0 THEN n_fast / n_workloads END AS fast_p
FROM fast_p_universe u JOIN p_grid g ON g.panel = u.panel CROSS JOIN settings st
GROUP BY u.panel, u.language, u.author, g.p
ORDER BY u.panel, u.language, u.author, g.p;
