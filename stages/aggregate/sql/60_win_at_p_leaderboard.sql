-- Q (Table C, Fig. 5): the win@p leaderboard with flashinfer-bench's semantics
-- (examples/win_at_p.py): groups are (definition, workload uuid) with at least one trace; per
-- author the minimum-latency PASSED run (best of its solutions); the reference is the configured
-- baseline, else (win_fallback = 'fastest') the fastest author of the group; r = L_ref / L_author;
-- win@p = n(r > p) / n_total where n_total counts every group the author attempted (failed runs
-- are losses); "% evaluated" = groups attempted / all groups.
CREATE OR REPLACE VIEW win_groups AS SELECT DISTINCT definition, uuid FROM run_summary;

CREATE OR REPLACE VIEW win_reference AS
WITH fastest AS (
  SELECT definition, uuid, min(latency_ms) AS latency_ms FROM best_run_per_author_workload GROUP BY ALL
)
SELECT g.definition, g.uuid,
  coalesce(b.latency_ms, CASE WHEN (SELECT win_fallback FROM settings) = 'fastest' THEN f.latency_ms END) AS ref_ms,
  CASE WHEN b.latency_ms IS NOT NULL THEN 'baseline'
       WHEN (SELECT win_fallback FROM settings) = 'fastest' AND f.latency_ms IS NOT NULL THEN 'fastest author'
       ELSE 'none' END AS ref_source
FROM win_groups g
LEFT JOIN baseline_latency_per_workload b USING (definition, uuid)
LEFT JOIN fastest f USING (definition, uuid);

CREATE OR REPLACE VIEW win_ratio_per_author_workload AS
SELECT a.author, a.definition, a.uuid, a.best_solution, a.latency_ms, w.ref_ms, w.ref_source,
  w.ref_ms / a.latency_ms AS r
FROM best_run_per_author_workload a JOIN win_reference w USING (definition, uuid)
WHERE NOT a.is_baseline_author;

-- Ranking needs comparable coverage: an author judged on 15 % of the groups does not lead one judged on
-- 85 %. Coverage = groups attempted / all groups (the workloads of the definitions judged); only authors
-- covering at least leaderboard_min_coverage of the best-covered author's groups are ranked (by win@p,
-- then name). The others follow, without a rank (ranked = false), in the same order.
CREATE OR REPLACE VIEW win_at_p_leaderboard AS
WITH per AS (
  SELECT author, count(*) AS n_total,
    count(*) FILTER (WHERE r > (SELECT win_p FROM settings)) AS n_wins,
    count(*) FILTER (WHERE latency_ms IS NOT NULL) AS n_passed_groups
  FROM win_ratio_per_author_workload GROUP BY author
), corr AS (
  SELECT author, count(*) FILTER (WHERE passed) AS n_passed_cells, count(*) AS n_cells FROM cells GROUP BY author
), cmp AS (
  SELECT p.*, p.n_total >= (SELECT leaderboard_min_coverage FROM settings) * max(p.n_total) OVER () AS ranked
  FROM per p
), groups AS (SELECT count(*) AS n FROM win_groups)
SELECT
  CASE WHEN p.ranked THEN row_number() OVER (PARTITION BY p.ranked ORDER BY p.n_wins / p.n_total DESC, p.author) END AS rank,
  p.author,
  printf('%d/%d (%.1f %%)', p.n_total, g.n, 100.0 * p.n_total / g.n) AS coverage,
  p.ranked,
  (SELECT win_p FROM settings) AS p, p.n_total, p.n_wins,
  round(100.0 * p.n_wins / p.n_total, 1) AS win_pct,
  round(100.0 * p.n_total / g.n, 1) AS pct_evaluated,
  round(100.0 * c.n_passed_cells / c.n_cells, 1) AS correctness_pct
FROM cmp p CROSS JOIN groups g LEFT JOIN corr c USING (author)
ORDER BY p.ranked DESC, p.n_wins / p.n_total DESC, p.author;

-- Q: win@p as a curve (Fig. 5) on a regular grid up to max(1.5, largest r), capped; exact at
-- each grid point (strict '>'), computed with an ASOF join on each author's sorted ratios.
CREATE OR REPLACE VIEW win_at_p_curve AS
WITH rr AS (SELECT author, r FROM win_ratio_per_author_workload WHERE r IS NOT NULL),
tot AS (SELECT author, count(*) AS n_total, count(r) AS n_r FROM win_ratio_per_author_workload GROUP BY author),
cum AS (
  SELECT author, r, sum(cnt) OVER (PARTITION BY author ORDER BY r) AS n_le
  FROM (SELECT author, r, count(*) AS cnt FROM rr GROUP BY author, r)
),
top AS (
  SELECT least((SELECT win_grid_cap FROM settings), greatest(1.5, coalesce(max(r), 0))) AS pmax FROM rr
),
grid AS (
  SELECT round(i * (SELECT win_grid_step FROM settings), 6) AS p
  FROM range(0, CAST(ceil((SELECT pmax FROM top) / (SELECT win_grid_step FROM settings)) AS BIGINT) + 1) t(i)
),
pts AS (SELECT t.author, t.n_total, t.n_r, g.p FROM tot t CROSS JOIN grid g)
SELECT pts.author, pts.p, pts.n_total, (pts.n_r - coalesce(c.n_le, 0))::BIGINT AS n_wins,
  (pts.n_r - coalesce(c.n_le, 0)) / pts.n_total AS win
FROM pts ASOF LEFT JOIN cum c ON c.author = pts.author AND c.r <= pts.p
ORDER BY pts.author, pts.p;
