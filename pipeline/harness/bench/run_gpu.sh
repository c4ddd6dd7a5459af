#!/bin/bash
# One batched device call: probe, fidelity, GPU cheater suite, build-time and real-solution benchmarks.
# Each part writes its JSON as it measures, so a part stopped by its time limit still reports.
# Usage (device machine, repo root): bash pipeline/harness/bench/run_gpu.sh "$OUT" [parts]
OUT=${1:?out dir}
PARTS=${2:-probe,fidelity,cheaters,builds}
export PYTHONUNBUFFERED=1
H=pipeline/harness
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv
if [[ $PARTS == *probe* ]]; then python3 $H/judge probe --out "$OUT/probe.json"; fi
if [[ $PARTS == *fidelity* ]]; then
  timeout ${T_FID:-200} python3 $H/bench/gpu_bench.py --part fidelity --out "$OUT" > "$OUT/fidelity.log" 2>&1
  cut -c1-400 "$OUT/fidelity.log" | tail -12
fi
if [[ $PARTS == *cheaters* ]]; then
  timeout ${T_CHEAT:-240} python3 $H/tests/test_harness.py --device cuda --skip compile --jobs 8 --report "$OUT/cheaters_gpu.json" > "$OUT/cheaters.log" 2>&1
  grep -v "^ok" "$OUT/cheaters.log" | tail -15
fi
if [[ $PARTS == *builds* ]]; then
  timeout ${T_BUILD:-300} python3 $H/bench/gpu_bench.py --part builds+cells --build-defs ${BUILD_DEFS:-rmsnorm_h128,gemm_n128_k2048} --out "$OUT" > "$OUT/builds.log" 2>&1
  cut -c1-400 "$OUT/builds.log" | tail -30
fi
