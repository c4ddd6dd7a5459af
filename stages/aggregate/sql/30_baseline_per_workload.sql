-- Q: Which baseline does each definition use? The first baseline rule (by priority) of the
-- definition's op type (or of '*' when the op type has none) that matches at least one solution
-- with a timed run here: a baseline that could not run (FlashInfer not installed) is skipped.
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
  WHERE s.name IN (SELECT solution FROM run_summary WHERE min_latency_ms IS NOT NULL)
),
first AS (SELECT definition, min(priority) AS priority FROM cand GROUP BY definition)
SELECT
  c.definition, any_value(c.op_type) AS op_type, c.priority, any_value(c.label) AS label,
  any_value(c.kind) AS kind, list(c.solution ORDER BY c.solution) AS solutions,
  c.priority > 0 AS is_fallback
FROM cand c JOIN first f USING (definition, priority)
GROUP BY c.definition, c.priority;

-- Q: What is the baseline latency of each workload? The minimum timed PASSED run of the chosen
-- baseline solutions; a workload on which the baseline never passed has no row.
CREATE OR REPLACE VIEW baseline_latency_per_workload AS
SELECT t.definition, t.uuid, min(t.min_latency_ms) AS latency_ms,
  arg_min(t.solution, t.min_latency_ms) AS solution, any_value(b.label) AS label
FROM run_summary t
JOIN baseline_choice b ON b.definition = t.definition AND list_contains(b.solutions, t.solution)
WHERE t.min_latency_ms IS NOT NULL
GROUP BY t.definition, t.uuid;

-- Q: Which baseline did each op type use, and was it a fallback? (Table captions quote this.)
CREATE OR REPLACE VIEW baseline_by_op_type AS
SELECT op_type, label, is_fallback, count(*) AS n_definitions
FROM baseline_choice GROUP BY ALL ORDER BY op_type, label;
