-- Base tables of the aggregate database. They are filled by load.ts from the upstream TraceSet
-- fragments (definitions, workloads, solutions through the TS parsers; traces through
-- read_ndjson) and from the stage params (baseline rules, settings, p grids).
CREATE TABLE definitions (name VARCHAR PRIMARY KEY, op_type VARCHAR, panel VARCHAR, file VARCHAR, doc VARCHAR);
CREATE TABLE workloads (definition VARCHAR, uuid VARCHAR, axes VARCHAR, file VARCHAR, line INTEGER);
CREATE TABLE solutions (name VARCHAR PRIMARY KEY, definition VARCHAR, author VARCHAR, language VARCHAR, file VARCHAR);
-- One row per evaluated trace line. `line` is known only for rows that went through the TS parser.
-- Workload axes and environment libs are not kept per row (they cost a third of the load time at
-- 1M rows): axes come from the workloads files (trace_axes holds those of workloads seen only in
-- traces) and libs from the first line of each file (trace_files.environment).
CREATE TABLE traces (
  file VARCHAR, line INTEGER, definition VARCHAR, solution VARCHAR, uuid VARCHAR,
  status VARCHAR, hardware VARCHAR, timestamp VARCHAR, log VARCHAR,
  max_relative_error DOUBLE, max_absolute_error DOUBLE,
  latency_ms DOUBLE, reference_latency_ms DOUBLE, speedup_factor DOUBLE, loaded_by VARCHAR
);
-- origin: 'judged' (a judging stage's trace) or 'rejected' (generate's trace of a solution it rejected,
-- from the cell's rejected/ folder; see load_derived.ts).
CREATE TABLE trace_files (file VARCHAR, path VARCHAR, bytes BIGINT, link VARCHAR, environment VARCHAR, origin VARCHAR);
-- The baseline as the time stage measured it beside each candidate (timing.json's details.baseline), for
-- the workloads whose baseline has no trace of its own (an authors filter kept it out of verify and time).
CREATE TABLE side_baseline (definition VARCHAR, uuid VARCHAR, solution VARCHAR, latency_ms DOUBLE, file VARCHAR);
-- What the time stage's timing.json says of each timed cell beyond its trace: bound, 'host' where the
-- call's host submission took at least 0.8 of the candidate's median (its time moves with the host's
-- speed), 'device' otherwise, NULL unrecorded; tail_charged, whether the tail check charged the cell for
-- work left running after it returned (rigor async_work_after_return).
CREATE TABLE cell_timing (solution VARCHAR, uuid VARCHAR, bound VARCHAR, tail_charged BOOLEAN, sm_mhz DOUBLE,
  throttled BOOLEAN);
CREATE TABLE provenance (stage VARCHAR, cell_id VARCHAR, cell_key VARCHAR, dir VARCHAR, doc VARCHAR);
CREATE TABLE diagnostics (level VARCHAR, file VARCHAR, line INTEGER, path VARCHAR, message VARCHAR);
-- The first error of each distinct COMPILE_ERROR log and its category (compile_errors.ts): a log is
-- read line by line there, skipping command lines, warnings and context, so that a flag the harness
-- passes (-Xptxas=-O3) cannot decide the category.
CREATE TABLE compile_error_class (log VARCHAR, first_error VARCHAR, category VARCHAR);
CREATE TABLE workload_cost (definition VARCHAR, uuid VARCHAR, flops DOUBLE, bytes DOUBLE, model VARCHAR);
-- Ordered baseline candidates per op type ('*' = every op type without its own rules).
CREATE TABLE baseline_rules (op_type VARCHAR, priority INTEGER, author VARCHAR, match VARCHAR, label VARCHAR, kind VARCHAR);
CREATE TABLE settings (
  fast_p_operator VARCHAR, win_p DOUBLE, win_fallback VARCHAR,
  bandwidth_tbs DOUBLE, tflops DOUBLE, win_grid_step DOUBLE, win_grid_cap DOUBLE,
  leaderboard_min_coverage DOUBLE
);
CREATE TABLE p_grid (panel VARCHAR, p DOUBLE);
-- Severity order used to name a cell's status when its runs disagree (lower = reported first).
CREATE TABLE status_order (status VARCHAR, severity INTEGER);
INSERT INTO status_order VALUES
  ('COMPILE_ERROR', 1), ('RUNTIME_ERROR', 2), ('TIMEOUT', 3), ('INCORRECT_SHAPE', 4),
  ('INCORRECT_DTYPE', 5), ('INCORRECT_NUMERICAL', 6), ('PASSED', 7);
