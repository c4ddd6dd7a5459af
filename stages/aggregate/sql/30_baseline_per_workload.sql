-- Q: How was each baseline solution timed on each workload? By its own runs (its traces), or, where it
-- has none, beside the candidates: the time stage times the baseline in every candidate's cell
-- (timing.json, loaded into side_baseline), so a run whose authors filter left the baseline out of
-- verify and time still knows its latency. Its own runs win where both exist.
CREATE OR REPLACE VIEW baseline_timings AS
WITH own AS (
  SELECT solution, definition, uuid, min_latency_ms AS latency_ms, 'own runs' AS source
  FROM run_summary WHERE min_latency_ms IS NOT NULL
),
beside AS (
  SELECT solution, definition, uuid, min(latency_ms) AS latency_ms, 'timed beside candidates' AS source
  FROM side_baseline b
  WHERE latency_ms > 0
    AND NOT EXISTS (SELECT 1 FROM own o WHERE o.solution = b.solution AND o.uuid = b.uuid AND o.definition = b.definition)
  GROUP BY ALL
)
SELECT * FROM own UNION ALL SELECT * FROM beside;

-- Q: Which baseline does each definition use? The first baseline rule (by priority) of the
-- definition's op type (or of '*' when the op type has none) that matches at least one solution
-- with a timing here: a baseline that could not run (FlashInfer not installed) is skipped.
-- A chosen rule with priority > 0 is a fallback (e.g. torch where FlashInfer is not installed).
CREATE OR REPLACE VIEW baseline_choice AS
WITH rules AS (
  SELECT d.name AS definition, d.op_type, r.*
  FROM definitions d
  JOIN baseline_rules r
    ON r.op_type = d.op_type
    OR (r.op_type = '*' AND d.op_type NOT IN (SELECT op_type FROM baseline_rules))
),
cand AS (
  SELECT r.definition, r.op_type, r.priority, r.label, r.kind, s.name AS solution
  FROM rules r
  JOIN solutions s ON s.definition = r.definition AND s.author = r.author
    AND regexp_matches(s.name, r.match)
  WHERE s.name IN (SELECT solution FROM baseline_timings)
),
first AS (SELECT definition, min(priority) AS priority FROM cand GROUP BY definition)
SELECT
  c.definition, any_value(c.op_type) AS op_type, c.priority, any_value(c.label) AS label,
  any_value(c.kind) AS kind, list(c.solution ORDER BY c.solution) AS solutions,
  c.priority > 0 AS is_fallback,
  CASE WHEN bool_or(c.solution IN (SELECT solution FROM baseline_timings WHERE source = 'own runs'))
    THEN 'own runs' ELSE 'timed beside candidates' END AS timed_by
FROM cand c JOIN first f USING (definition, priority)
GROUP BY c.definition, c.priority;

-- Q: What is the baseline latency of each workload? The minimum timing of the chosen baseline
-- solutions (equal ones: the smallest name); a workload on which the baseline never passed has no row.
CREATE OR REPLACE VIEW baseline_latency_per_workload AS
SELECT t.definition, t.uuid, min(t.latency_ms) AS latency_ms,
  arg_min(t.solution, t.latency_ms ORDER BY t.solution) AS solution, any_value(b.label) AS label,
  min(t.source) AS source
FROM baseline_timings t
JOIN baseline_choice b ON b.definition = t.definition AND list_contains(b.solutions, t.solution)
GROUP BY t.definition, t.uuid;

-- Q: Which baseline did each op type use, was it a fallback, and how was it timed? (Table captions quote this.)
CREATE OR REPLACE VIEW baseline_by_op_type AS
SELECT op_type, label, is_fallback, timed_by, count(*) AS n_definitions
FROM baseline_choice GROUP BY ALL ORDER BY op_type, label, timed_by;
