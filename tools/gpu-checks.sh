#!/usr/bin/env bash
# The GPU checks that are not pipeline cells, in one call on the GPU machine (repository root), in the
# order that pays most per second when a call may be the session's only one; each writes its log
# under $OUT and the last lines of every log are printed at the end:
#   1. trace a Llama-3.1-8B-shaped generation into $OUT/trace-llama.tar.xz (python/tests/gpu_trace_llama.py)
#      and, beside it, the apply() substitution check on that model (gpu_check_llama.py): light GPU use,
#      run while 2. checks the harness's units on CUDA (correctness only, so sharing the GPU is harmless);
#   3. apply()'s dispatch overhead per call (host-side, seconds; $OUT/apply_dispatch.json);
#   4. the harness's cheaters, then its timing defences (the gate, the persisting-L2 cheater), on CUDA,
#      on a quiet GPU;
#   5. apply()'s end-to-end section with whatever time is left ($OUT/apply_bench.json, into which the
#      dispatch rows of 3. are merged at the end).
# Usage: bash tools/gpu-checks.sh SECONDS   (the whole script stays within SECONDS; default 520)
#   GPU_CHECKS_SKIP=units,cheaters,timing leaves out 2. and/or 4.'s two parts (a short call then
#   reaches 5.); `cheaters` alone runs 4.'s timing defences only (the cheaters took 150 s on an H100,
#   the units 200 s); `llama` leaves out 1. and `dispatch` 3., for a call after one that ran them.
set -uo pipefail
limit=${1:-520}
skip=",${GPU_CHECKS_SKIP:-},"
start=$(date +%s)
left() { echo $((limit - $(date +%s) + start)); }
export PYTHONUNBUFFERED=1 PYTHONPATH=python:python/tests
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv >"$OUT/gpu.txt" 2>&1
[[ $skip == *,llama,* ]] || (
  # The device tool does not bring back folders as deep as a TraceSet's: it travels as a tarball.
  rm -rf /tmp/trace-llama
  (time timeout 70 python3 python/tests/gpu_trace_llama.py /tmp/trace-llama) >"$OUT/trace.log" 2>&1
  [ -d /tmp/trace-llama ] && tar cJf "$OUT/trace-llama.tar.xz" -C /tmp trace-llama
  (time timeout 90 python3 python/tests/gpu_check_llama.py) >"$OUT/llama.log" 2>&1
) &
t=$(($(left) - 60)) # leave a minute for the dispatch measurement
[ "$t" -gt 200 ] && t=200
[ "$t" -gt 30 ] && [[ $skip != *,units,* ]] && (time timeout "$t" python3 \
  pipeline/harness/tests/test_harness.py --device cuda --skip timing,cheaters) >"$OUT/harness_units.log" 2>&1
wait
[[ $skip == *,dispatch,* ]] ||
  (time timeout 60 python3 python/tests/gpu_bench_apply.py --skip e2e,graphs,paged) >"$OUT/apply_dispatch.log" 2>&1
[ -f "$OUT/apply_bench.json" ] && mv "$OUT/apply_bench.json" "$OUT/apply_dispatch.json"
t=$(($(left) - 40))
parts=units
[[ $skip == *,cheaters,* ]] && parts=$parts,cheaters
[[ $skip == *,timing,* ]] && parts=$parts,timing
[ "$t" -gt 30 ] && [ "$parts" != units,cheaters,timing ] && (time timeout "$t" python3 \
  pipeline/harness/tests/test_harness.py --device cuda --skip "$parts") >"$OUT/harness_gpu.log" 2>&1
t=$(left)
[ "$t" -gt 30 ] && (time timeout "$t" python3 python/tests/gpu_bench_apply.py --skip dispatch,paged) \
  >"$OUT/apply_e2e.log" 2>&1
# One apply_bench.json for tools/ae/apply_measurements.ts: the end-to-end run's sections with the
# dispatch run's rows (each run wrote only its own sections).
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
disp_path, bench_path = os.path.join(out, "apply_dispatch.json"), os.path.join(out, "apply_bench.json")
if os.path.exists(disp_path):
    disp = json.load(open(disp_path))
    bench = json.load(open(bench_path)) if os.path.exists(bench_path) else dict(disp)
    bench["dispatch"] = disp.get("dispatch", {})
    bench["notes"] = disp.get("notes", []) + [n for n in bench.get("notes", []) if n not in disp.get("notes", [])]
    json.dump(bench, open(bench_path, "w"), indent=1)
PY
for f in gpu.txt trace.log llama.log harness_units.log apply_dispatch.log harness_gpu.log apply_e2e.log; do
  [ -f "$OUT/$f" ] && { echo "== $f"; tail -12 "$OUT/$f" | cut -c1-220; }
done
